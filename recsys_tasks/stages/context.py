"""What every stage knows about its run: the run id, the resolved config, and where things go."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import sqlalchemy as sa

from recsys_tasks import results_db
from recsys_tasks.artifacts import ArtifactStore, run_key
from recsys_tasks.config import PipelineConfig


@dataclass(frozen=True)
class RunContext:
    run_id: str
    config: PipelineConfig

    @property
    def key(self) -> str:
        return run_key(self.run_id)

    def path(self, name: str) -> str:
        """Artifact key of something this run produces."""
        return f"runs/{self.key}/{name}"

    @cached_property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.config.artifact_root)

    @cached_property
    def tables(self) -> results_db.Tables:
        return results_db.Tables.from_config(self.config)

    @cached_property
    def engine(self) -> sa.Engine:
        return results_db.make_engine(self.config.db_url)

    @cached_property
    def db(self) -> sa.Engine:
        """The results database with its tables and view in place (the DDL runs once per context)."""
        results_db.apply_schema(self.engine, self.tables)
        return self.engine

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Record the stage's duration and outcome in the stage table, whatever happens."""
        started, tick = results_db.utcnow(), time.perf_counter()
        results_db.record_stage(self.db, self.tables, self.run_id, stage, "running", started, None)
        status = "failed"
        try:
            yield
            status = "success"
        finally:
            seconds = round(time.perf_counter() - tick, 3)
            results_db.record_stage(self.db, self.tables, self.run_id, stage, status, started, seconds)

    def record(self, status: str, **fields: object) -> None:
        """Update this run's row in the run table (created on first use)."""
        results_db.record_run(self.db, self.tables, self.run_id, status, **fields)
