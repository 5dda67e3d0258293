"""The outcomes table: how published lists did (rows made by `scoring.outcomes`)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import sqlalchemy as sa

from recsys_tasks.db.tables import Tables

OUTCOME_COLUMNS = (
    "run_id", "published_run_id", "model_version", "strategy", "variant", "k", "events_since", "events_until",
    "listed_users", "active_users", "hit_users", "hit_rate", "ndcg", "coverage", "weighted_hits",
    "uplift", "uplift_low", "uplift_high", "scored_at",
)


def write_outcomes(engine: sa.Engine, tables: Tables, rows: pd.DataFrame) -> None:
    """Replace this run's outcome rows (a retried task writes them again, not twice)."""
    if rows.empty:
        return
    columns = [c for c in OUTCOME_COLUMNS if c in rows]
    records = [{c: (None if isinstance(v, float) and math.isnan(v) else v) for c, v in r.items()}
               for r in rows[columns].to_dict("records")]
    stamps = [c for c in ("events_since", "events_until", "scored_at") if c in columns]
    insert = sa.text(
        f"INSERT INTO {tables.outcomes} ({', '.join(columns)}) VALUES ({', '.join(f':{c}' for c in columns)})"
    ).bindparams(*[sa.bindparam(c, type_=sa.DateTime(timezone=True)) for c in stamps])
    with engine.begin() as conn:
        for run_id in rows["run_id"].unique():
            conn.execute(sa.text(f"DELETE FROM {tables.outcomes} WHERE run_id = :r"), {"r": run_id})
        conn.execute(insert, records)


def read_outcomes(engine: sa.Engine, tables: Tables, run_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Outcome rows, newest scoring first (one run's when `run_id` is given)."""
    where = "WHERE run_id = :r " if run_id else ""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT * FROM {tables.outcomes} {where}ORDER BY scored_at DESC, strategy, variant, model_version LIMIT :n"),
            {"r": run_id, "n": limit},
        ).mappings().all()
    return [dict(r) for r in rows]
