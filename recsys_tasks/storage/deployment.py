"""One deployment's handle: its config, the artifact store, and the results database's names
and engine, opened lazily. Every stage, command and console page goes through one.

Readers (`recsys show`, `runs`, `outcomes`, the console, reports) only read: on a deployment
that has not run yet they find no tables and say so. Writers ask for `writable()`, which
applies the schema once (`recsys init-db`, a run's first record, the publish)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import sqlalchemy as sa

from recsys_tasks import db
from recsys_tasks.storage.artifacts import ArtifactStore


@dataclass
class Deployment:
    config: Any  # a PipelineConfig

    @cached_property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.config.artifact_root)

    @cached_property
    def tables(self) -> db.Tables:
        return db.Tables.from_config(self.config)

    @cached_property
    def engine(self) -> sa.Engine:
        return db.make_engine(self.config.db_url)

    def writable(self) -> sa.Engine:
        """The engine, with every table and view in place (checked once per handle)."""
        if "_schema_applied" not in self.__dict__:
            db.apply_schema(self.engine, self.tables)
            self.__dict__["_schema_applied"] = True
        return self.engine

    def has(self, name: str) -> bool:
        """Whether a table or view exists (a fresh deployment has none)."""
        return db.has_table(self.engine, name)

    def has_runs(self) -> bool:
        return self.has(self.tables.runs)

    def columns(self, name: str) -> list[str]:
        return db.columns_of(self.engine, name)

    def current_run(self) -> str | None:
        """The run readers see, None before the first publish."""
        return db.current_run_id(self.engine, self.tables) if self.has(self.tables.pointer) else None

    def read_json(self, key: str) -> dict[str, Any] | None:
        return self.store.read_json(key) if self.store.exists(key) else None

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
