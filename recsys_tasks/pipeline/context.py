"""What every stage knows about its run: the run id, the resolved config, and where things go."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
import sqlalchemy as sa

from recsys_tasks import PROGRESS, db
from recsys_tasks.clock import utcnow
from recsys_tasks.config import PipelineConfig
from recsys_tasks.pipeline import telemetry
from recsys_tasks.storage import layout
from recsys_tasks.storage.artifacts import ArtifactStore
from recsys_tasks.storage.deployment import Deployment
from recsys_tasks.storage.layout import run_key

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RunContext:
    run_id: str
    config: PipelineConfig
    # the run's logical date (its data interval's end): every time-dependent choice counts from
    # it, so a cleared run or a backfill sees what its date saw; None: now (runs outside Airflow)
    as_of: pd.Timestamp | None = None

    @cached_property
    def production(self) -> str | None:
        """The production version this run stands against: the newest one another run put in
        production (a replayed run never judges, or starts from, its own model)."""
        from recsys_tasks.storage import registry

        return registry.production_for(self.store, self.run_id)

    @property
    def key(self) -> str:
        return run_key(self.run_id)

    def path(self, name: str) -> str:
        """Artifact key of something this run produces."""
        return layout.run_file(self.run_id, name)

    @cached_property
    def deployment(self) -> Deployment:
        return Deployment(self.config)

    @property
    def store(self) -> ArtifactStore:
        return self.deployment.store

    @property
    def tables(self) -> db.Tables:
        return self.deployment.tables

    @property
    def engine(self) -> sa.Engine:
        return self.deployment.engine

    @cached_property
    def db(self) -> sa.Engine:
        """The results database with its tables and view in place (checked once per context),
        and the verdicts that waited for it while it was down written."""
        engine = self.deployment.writable()
        self._flush_pending(engine)
        return engine

    def record_later(self, status: str, message: str) -> None:
        """This run's verdict, kept in the artifact store until the results database is back."""
        self.store.write_json(layout.pending_file(self.run_id), {"run_id": self.run_id, "status": status, "message": message})

    def _flush_pending(self, engine: sa.Engine) -> None:
        for key in self.store.list(layout.PENDING_STATUS):
            pending = self.store.read_json(key)
            db.record_run(engine, self.tables, pending["run_id"], pending["status"], message=pending["message"])
            self.store.delete(key)
            log.info("recorded the verdict of run %s, kept while the results database was down", pending["run_id"])

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Record the stage's duration and outcome in the stage table, whatever happens."""
        started, tick = utcnow(), time.perf_counter()
        db.record_stage(self.db, self.tables, self.run_id, stage, "running", started, None)
        status = "failed"
        try:
            yield
            status = "success"
        finally:
            seconds = round(time.perf_counter() - tick, 3)
            telemetry.stage(stage, seconds, failed=status == "failed")
            db.record_stage(self.db, self.tables, self.run_id, stage, status, started, seconds)
            if status == "success":
                log.info("%s: done in %.1f s", stage, seconds, extra=PROGRESS if seconds >= 1 else {})

    def record(self, status: str, **fields: object) -> None:
        """Update this run's row in the run table (created on first use)."""
        db.record_run(self.db, self.tables, self.run_id, status, **fields)
