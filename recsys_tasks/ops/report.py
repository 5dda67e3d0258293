"""What a person reads after a run: metrics, the model, sample recommendations, the SQL to use."""

from __future__ import annotations

import json
from typing import Any

from recsys_tasks import db
from recsys_tasks.config import PipelineConfig
from recsys_tasks.metrics import HEADLINE_METRICS, SELECTION_METRIC
from recsys_tasks.redact import redact
from recsys_tasks.scoring.report import SCORER_ORDER, metrics_table
from recsys_tasks.storage import layout
from recsys_tasks.storage.deployment import Deployment


def run_summary(config: PipelineConfig, run_id: str) -> dict[str, Any]:
    """The one-line JSON summary of a run, read back from the run table. Metrics a run never
    computed are null, not 0; the database URL is shown without its credentials."""
    with Deployment(config) as dep:
        record = (db.get_run(dep.engine, dep.tables, run_id) if dep.has_runs() else None) or UNKNOWN
    metrics = record.get("metrics") or {}

    def picked(scorer: str) -> dict[str, float] | None:
        values = metrics.get(scorer)
        return {k: round(values[k], 4) for k in HEADLINE_METRICS if k in values} if values else None

    return {
        "run_id": run_id,
        "status": record["status"],
        "model_version": record.get("model_version"),
        "metrics": picked("model"),
        "baseline_metrics": {name: picked(name) for name in SCORER_ORDER[1:] if metrics.get(name)} or None,
        "rows_written": record.get("rows_written"),
        # which scorer made the published lists: the model, or a baseline on a night without one
        "lists_from": (layout.baseline_of(record.get("model_version")) or "model") if record["status"] == "published" else None,
        "results_db": redact(config.db_url),
        "message": record.get("message"),
    }


def runs_table(runs: list[dict[str, Any]], current: str | None, metric: str = SELECTION_METRIC) -> str:
    """`recsys runs`: one line per run, newest first; `*` marks the run readers see."""
    lines = [f"  {'run':<44} {'status':<18} {'model':<13} {metric:>8} {'best base':>10}  reason"]
    for run in runs:
        metrics = run.get("metrics") or {}
        value = metrics.get("model", {}).get(metric)
        bases = [metrics[n][metric] for n in SCORER_ORDER[2:] if metric in metrics.get(n, {})]
        mark = "*" if run["run_id"] == current else " "
        reason = (run.get("message") or "").splitlines()[0][:100] if run.get("message") else ""
        if run["status"] == "published" and (baseline := layout.baseline_of(run.get("model_version"))):
            reason = f"no model in production and the candidate lost to {baseline}: {baseline}'s lists published"
        lines.append(
            f"{mark} {run['run_id']:<44} {run['status']:<18} {run.get('model_version') or '-':<13} "
            f"{f'{value:.4f}' if value is not None else '-':>8} {f'{max(bases):.4f}' if bases else '-':>10}  {reason}"
        )
    return "\n".join(lines)


def render_report(config: PipelineConfig, run_id: str, sample_users: int = 3) -> str:
    """A plain-text report of a run and of what readers now see."""
    with Deployment(config) as dep:
        tables = dep.tables
        record = (db.get_run(dep.engine, tables, run_id) if dep.has_runs() else None) or UNKNOWN
        current = dep.current_run()
        lines = [f"run {run_id}: {record['status']}"]
        if record.get("message"):
            lines.append(f"  {record['message']}")
        metrics = record.get("metrics") or {}
        if metrics.get("model"):
            lines += ["", f"test metrics over {metrics.get('eval_users')} users (all items ranked, seen items excluded)",
                      metrics_table(metrics)]
        timings = db.stage_timings(dep.engine, tables, run_id) if dep.has(tables.stages) else []
        if timings:
            lines += ["", "stages: " + ", ".join(f"{t['stage']} {t['seconds'] or 0:.1f}s"
                                               + ("" if t["status"] == "success" else f" ({t['status']})") for t in timings)]
        lines += ["", f"model version: {record.get('model_version')}", f"rows written:  {record.get('rows_written') or 0}",
                  f"readers of {tables.view} see run: {current}"]
        for user in db.sample_users(dep.engine, tables, sample_users) if current else []:
            recs = db.read_current(dep.engine, tables, user)
            items = ", ".join(f"{r.item_id} ({r.score:.2f})" for r in recs.itertuples())
            lines.append(f"  {user}: {items}")
        lines += ["", f"a downstream app reads one user's list with sql/reader_query.sql (or {tables.view} "
                      "WHERE user_id = :user_id); docs/readers.md has the columns"]
    return "\n".join(lines)


UNKNOWN = {"status": "unknown", "metrics": {}}


def summary_line(summary: dict[str, Any]) -> str:
    return json.dumps(summary, sort_keys=False)
