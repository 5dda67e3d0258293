"""What every stage knows about its run: the run id, the resolved config, and where things go."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import sqlalchemy as sa

from recsys_tasks import results_db
from recsys_tasks.artifacts import ArtifactStore, run_key
from recsys_tasks.config import PipelineConfig

log = logging.getLogger(__name__)

PENDING_STATUS = "pending_status"  # run verdicts that could not reach the results database yet


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
        """The results database with its tables and view in place (checked once per context),
        and the verdicts that waited for it while it was down written."""
        results_db.apply_schema(self.engine, self.tables)
        self._flush_pending(self.engine)
        return self.engine

    def record_later(self, status: str, message: str) -> None:
        """This run's verdict, kept in the artifact store until the results database is back."""
        self.store.write_json(f"{PENDING_STATUS}/{self.key}.json", {"run_id": self.run_id, "status": status, "message": message})

    def _flush_pending(self, engine: sa.Engine) -> None:
        for key in self.store.list(PENDING_STATUS):
            pending = self.store.read_json(key)
            results_db.record_run(engine, self.tables, pending["run_id"], pending["status"], message=pending["message"])
            self.store.delete(key)
            log.info("recorded the verdict of run %s, kept while the results database was down", pending["run_id"])

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
