"""The run table and the stage table: what each run did and how long each stage took, and the
pointer that names the run readers see."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from recsys_tasks.clock import utcnow
from recsys_tasks.db.tables import Tables
from recsys_tasks.redact import redact


def pointer_run(conn: sa.Connection, tables: Tables) -> str | None:
    """The run the reader view shows now (the one pointer query)."""
    return conn.execute(sa.text(f"SELECT run_id FROM {tables.pointer} WHERE view_name = :v"), {"v": tables.view}).scalar()


def current_run_id(engine: sa.Engine, tables: Tables) -> str | None:
    with engine.connect() as conn:
        return pointer_run(conn, tables)


def _time_params(values: dict[str, Any]) -> list[sa.BindParameter]:
    return [sa.bindparam(k, type_=sa.DateTime(timezone=True)) for k, v in values.items() if isinstance(v, datetime)]


def record_run(engine: sa.Engine, tables: Tables, run_id: str, status: str, **fields: Any) -> None:
    """Insert or update this run's row in the run table (readers see it: credentials are masked)."""
    fields = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
    if "metrics" in fields and not isinstance(fields["metrics"], (str, type(None))):
        fields["metrics"] = json.dumps(fields["metrics"], sort_keys=True)
    now = utcnow()
    values = {"run_id": run_id, "status": status, "updated_at": now, **fields}
    insert_values = {"started_at": now, **values}
    columns = ", ".join(insert_values)
    placeholders = ", ".join(f":{c}" for c in insert_values)
    updates = ", ".join(f"{c} = excluded.{c}" for c in values if c != "run_id")
    statement = sa.text(
        f"INSERT INTO {tables.runs} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT (run_id) DO UPDATE SET {updates}"
    ).bindparams(*_time_params(insert_values))
    with engine.begin() as conn:
        conn.execute(statement, insert_values)


def record_stage(
    engine: sa.Engine, tables: Tables, run_id: str, stage: str, status: str, started_at: datetime, seconds: float | None
) -> None:
    statement = sa.text(
        f"INSERT INTO {tables.stages} (run_id, stage, status, started_at, seconds) VALUES (:r, :s, :st, :t, :sec) "
        "ON CONFLICT (run_id, stage) DO UPDATE SET status = excluded.status, started_at = excluded.started_at, "
        "seconds = excluded.seconds"
    ).bindparams(sa.bindparam("t", type_=sa.DateTime(timezone=True)))
    with engine.begin() as conn:
        conn.execute(statement, {"r": run_id, "s": stage, "st": status, "t": started_at, "sec": seconds})


def stage_timings(engine: sa.Engine, tables: Tables, run_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT stage, status, seconds, started_at FROM {tables.stages} WHERE run_id = :r ORDER BY started_at"),
            {"r": run_id},
        ).mappings().all()
    return [dict(r) for r in rows]


def _decoded(row: Any) -> dict[str, Any]:
    return {**dict(row), "metrics": json.loads(row["metrics"]) if row["metrics"] else {}}


def get_run(engine: sa.Engine, tables: Tables, run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT * FROM {tables.runs} WHERE run_id = :r"), {"r": run_id}).mappings().first()
    return None if row is None else _decoded(row)


def recent_runs(engine: sa.Engine, tables: Tables, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs first, with their metrics decoded."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT * FROM {tables.runs} ORDER BY started_at DESC LIMIT :n"), {"n": limit}
        ).mappings().all()
    return [_decoded(r) for r in rows]


def run_statuses(engine: sa.Engine, tables: Tables) -> dict[str, str]:
    """Every run id with its status."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(f"SELECT run_id, status FROM {tables.runs}")).all())


def run_dates(engine: sa.Engine, tables: Tables) -> tuple[list[dict[str, Any]], str | None]:
    """Every run's id, status, model version, start and publish times, and the run readers
    see, read together (what retention decides by)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT run_id, status, model_version, started_at, published_at FROM {tables.runs}")
        ).mappings().all()
        return [dict(r) for r in rows], pointer_run(conn, tables)


def metric_history(engine: sa.Engine, tables: Tables, metric: str, limit: int = 30) -> list[dict[str, Any]]:
    """The chosen metric of the candidate (and popularity) for recent evaluated runs, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT run_id, status, model_version, metrics, updated_at FROM {tables.runs} "
                "WHERE metrics IS NOT NULL ORDER BY updated_at DESC LIMIT :n"
            ),
            {"n": limit},
        ).mappings().all()
    history = []
    for row in reversed(rows):
        metrics = json.loads(row["metrics"])
        if metric in metrics.get("model", {}):
            history.append({
                "run_id": row["run_id"], "status": row["status"], "model_version": row["model_version"],
                "model": metrics["model"][metric], "popularity": metrics.get("popularity", {}).get(metric),
            })
    return history
