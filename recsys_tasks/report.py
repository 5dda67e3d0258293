"""What a person reads after a run: metrics, the model, sample recommendations, the SQL to use."""

from __future__ import annotations

import json
from typing import Any

from recsys_tasks import results_db
from recsys_tasks.config import PipelineConfig


def run_summary(config: PipelineConfig, run_id: str) -> dict[str, Any]:
    """The one-line JSON summary of a run, read back from the run table."""
    tables = results_db.Tables.from_config(config)
    engine = results_db.make_engine(config.db_url)
    try:
        results_db.apply_schema(engine, tables)
        record = results_db.get_run(engine, tables, run_id) or {"status": "unknown", "metrics": {}}
    finally:
        engine.dispose()
    metrics = record.get("metrics") or {}
    pick = ("HR@10", "NDCG@10")
    return {
        "run_id": run_id,
        "status": record["status"],
        "model_version": record.get("model_version"),
        "metrics": {k: round(metrics.get("model", {}).get(k, 0.0), 4) for k in pick},
        "baseline_metrics": {k: round(metrics.get("popularity", {}).get(k, 0.0), 4) for k in pick},
        "rows_written": record.get("rows_written") or 0,
        "results_db": config.db_url,
        "message": record.get("message"),
    }


def render_report(config: PipelineConfig, run_id: str, sample_users: int = 3) -> str:
    """A plain-text report of a run and of what readers now see."""
    tables = results_db.Tables.from_config(config)
    engine = results_db.make_engine(config.db_url)
    try:
        record = results_db.get_run(engine, tables, run_id) or {"status": "unknown", "metrics": {}}
        current = results_db.current_run_id(engine, tables)
        lines = [f"run {run_id}: {record['status']}"]
        if record.get("message"):
            lines.append(f"  {record['message']}")
        metrics = record.get("metrics") or {}
        if metrics.get("model"):
            lines.append("")
            lines.append(f"test metrics over {metrics.get('eval_users')} users (all items ranked, seen items excluded)")
            lines.append(f"  {'metric':<9}{'model':>9}{'popularity':>12}")
            for name, value in metrics["model"].items():
                lines.append(f"  {name:<9}{value:>9.4f}{metrics['popularity'][name]:>12.4f}")
        lines.append("")
        lines.append(f"model version: {record.get('model_version')}")
        lines.append(f"rows written:  {record.get('rows_written') or 0}")
        lines.append(f"readers of {tables.view} see run: {current}")
        if current:
            with engine.connect() as conn:
                users = conn.exec_driver_sql(
                    f"SELECT DISTINCT user_id FROM {tables.view} ORDER BY user_id LIMIT {int(sample_users)}"
                ).scalars().all()
            for user in users:
                recs = results_db.read_current(engine, tables, user)
                items = ", ".join(f"{r.item_id} ({r.score:.2f})" for r in recs.itertuples())
                lines.append(f"  {user}: {items}")
        lines.append("")
        lines.append("a downstream app reads one user's list with:")
        lines.append("  " + results_db.sql_file("reader_query.sql", tables).split("\n", 1)[1].replace("\n", "\n  "))
    finally:
        engine.dispose()
    return "\n".join(lines)


def summary_line(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=False)
