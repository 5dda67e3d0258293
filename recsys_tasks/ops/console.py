"""What the operators' page in the Airflow UI shows: runs, quality over time, the model
registry (one user's or one item's published lists: ops/lookup.py).

Plain data (dicts and lists) read through `db`, `registry` and the artifact store,
plus one inline SVG chart. The Airflow plugin in `plugins/` renders it and decides who may see
or change what; nothing here knows Airflow. Reading never writes: the page works on a
deployment that has not run yet. The only writes are `promote` and `rollback`, which serve the
Models page and `recsys models promote/rollback` alike.
"""

from __future__ import annotations

import html
import math
import posixpath
from typing import Any

import pandas as pd

from recsys_tasks import db
from recsys_tasks.data.validation import describe, offline_html
from recsys_tasks.errors import ArtifactNotFoundError, GateRejectedError
from recsys_tasks.metrics import SELECTION_METRIC
from recsys_tasks.redact import redact
from recsys_tasks.scoring.report import SCORER_NAMES, SCORER_ORDER, metric_order
from recsys_tasks.storage import layout, registry
from recsys_tasks.storage.deployment import Deployment
from recsys_tasks.storage.layout import run_key

SERIES = {name: SCORER_NAMES[name] for name in SCORER_ORDER}  # one spelling per scorer, on every page
COLOURS = {"model": "#1f6feb", "production": "#2da44e", "ease": "#bf8700", "item_knn": "#8250df", "popularity": "#8c959f"}


def when(value: Any) -> str:
    """A timestamp as `2026-11-23 20:48 UTC` (SQLite hands back ISO text, PostgreSQL datetimes)."""
    if value in (None, ""):
        return ""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_convert("UTC") if stamp.tzinfo else stamp  # the pipeline stores UTC, with or without the zone
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def reasons(text: str | None) -> list[str]:
    """The gate's `a; b; c` split into its clauses (a `;` inside parentheses stays put)."""
    out, depth, current = [], 0, ""
    for char in text or "":
        depth += (char == "(") - (char == ")")
        if char == ";" and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += char
    return [r for r in [*out, current.strip()] if r]


def _scores(metrics: dict[str, Any], metric: str) -> dict[str, float]:
    return {name: metrics[name][metric] for name in SERIES if metric in (metrics.get(name) or {})}


def _churn(metrics: dict[str, Any]) -> dict[str, Any] | None:
    published = metrics.get("published") or {}
    if not published.get("users"):
        return None
    k = published["k"]
    return {"k": k, "churn": published[f"churn@{k}"], "overlap": published[f"overlap@{k}"], "users": published["users"]}


def runs(dep: Deployment, limit: int = 30) -> list[dict[str, Any]]:
    """Recent runs, newest first: status, gate verdict, the selection metric, rows published, churn."""
    metric = dep.config.selection_metric
    if not dep.has_runs():
        return []
    current = dep.current_run()
    out = []
    for row in db.recent_runs(dep.engine, dep.tables, limit):
        metrics = row["metrics"] or {}
        scores = _scores(metrics, metric)
        baselines = {n: v for n, v in scores.items() if n not in ("model", "production")}
        out.append({
            "run_id": row["run_id"], "key": run_key(row["run_id"]), "status": row["status"],
            "current": row["run_id"] == current, "started": when(row.get("started_at")),
            "model_version": row.get("model_version"), "rows_written": row.get("rows_written"),
            "candidate": scores.get("model"), "production": scores.get("production"),
            "best_baseline": max(baselines.items(), key=lambda kv: kv[1]) if baselines else None,
            "best_baseline_name": SERIES.get(max(baselines, key=baselines.get), "") if baselines else None,
            "churn": _churn(metrics), "reasons": reasons(row.get("message")),
        })
    return out


def run_detail(dep: Deployment, run_id: str) -> dict[str, Any] | None:
    """Everything about one run: metrics per scorer, the gate's reasons, validation, timings."""
    record = db.get_run(dep.engine, dep.tables, run_id) if dep.has_runs() else None
    if record is None:
        return None
    key = run_key(run_id)
    metrics = record["metrics"] or (dep.read_json(layout.run_file(key, layout.EVALUATION)) or {})
    scorers = [n for n in SCORER_ORDER if isinstance(metrics.get(n), dict) and n != "published"]
    gate = dep.read_json(layout.run_file(key, layout.GATE))
    validation = dep.read_json(layout.run_file(key, layout.VALIDATION))
    timings = db.stage_timings(dep.engine, dep.tables, run_id) if dep.has(dep.tables.stages) else []
    longest = max((t["seconds"] or 0 for t in timings), default=0) or 1
    return {
        "run_id": run_id, "key": key, "status": record["status"], "current": run_id == dep.current_run(),
        "started": when(record.get("started_at")), "updated": when(record.get("updated_at")),
        "published": when(record.get("published_at")), "model_version": record.get("model_version"),
        "rows_written": record.get("rows_written"), "users": record.get("users"), "items": record.get("items"),
        "source": redact(record.get("source_uri") or ""), "message": record.get("message"),
        "scorers": [SERIES.get(n, n) for n in scorers],
        "metrics": [(m, [metrics[n].get(m) for n in scorers]) for m in sorted(metrics.get("model") or {}, key=metric_order)],
        "eval_users": metrics.get("eval_users"), "production_version": metrics.get("production_version"),
        "churn": _churn(metrics),
        "gate": {"blessed": gate["blessed"], "reasons": reasons(gate["reason"])} if gate else None,
        "validation": {
            "passed": validation["passed"], "rows": validation.get("rows"), "checks": len(validation.get("checks", [])),
            "failures": [describe(c) for c in validation.get("failures", [])],
            "warnings": [describe(c) for c in validation.get("warnings", [])],
        } if validation else None,
        "data_docs": dep.store.exists(layout.run_file(key, f"{layout.DATA_DOCS}/index.html")),
        "report_plot": dep.store.exists(layout.run_file(key, f"{layout.REPORT}/evaluation.png")),
        "timings": [{**t, "share": (t["seconds"] or 0) / longest} for t in timings],
    }


def run_artifact(dep: Deployment, key: str, path: str) -> bytes:
    """A file of a run's Data Docs or report; nothing else of the artifact root is reachable.
    HTML comes back self-contained (`validation.offline_html`, also for runs kept before it)."""
    clean = posixpath.normpath(path)
    if (key != run_key(key) or key.strip(".") == "" or clean != path.strip("/") or clean.startswith(("/", ".."))
            or not clean.startswith(layout.SERVED)):
        raise ArtifactNotFoundError(f"not a published artifact of a run: {key}/{path}")
    target = layout.run_file(key, clean)
    if not dep.store.exists(target):
        raise ArtifactNotFoundError(f"run {key} has no {clean}")
    body = dep.store.read_bytes(target)
    return offline_html(body.decode("utf-8")).encode("utf-8") if clean.endswith(".html") else body


def quality(dep: Deployment, limit: int = 60) -> list[dict[str, Any]]:
    """The offline selection metric of every scorer, per evaluated run, oldest first."""
    metric = dep.config.selection_metric
    if not dep.has_runs():
        return []
    rows = reversed(db.recent_runs(dep.engine, dep.tables, limit))
    return [
        {"run_id": r["run_id"], "key": run_key(r["run_id"]), "status": r["status"], "started": when(r.get("started_at")),
         "model_version": r.get("model_version"), "scores": _scores(r["metrics"], metric)}
        for r in rows if (r["metrics"] or {}).get("model", {}).get(metric) is not None
    ]


def nice_ticks(largest: float, most: int = 6) -> tuple[float, int]:
    """A round step (1, 2, 2.5 or 5 times a power of ten) and how many of them reach just past
    `largest`: axis labels read 0, 0.05, 0.10... rather than 0.179, 0.359."""
    if not largest or largest <= 0:
        return 1.0, 1
    for power in range(math.floor(math.log10(largest)) - 1, math.floor(math.log10(largest)) + 2):
        for mantissa in (1, 2, 2.5, 5):
            step = mantissa * 10.0**power
            if largest * 1.05 / step <= most:
                return step, max(1, math.ceil(largest * 1.05 / step))
    return 10.0 ** math.ceil(math.log10(largest)), 1


def quality_svg(history: list[dict[str, Any]], metric: str = SELECTION_METRIC, width: int = 880, height: int = 300,
                series: dict[str, str] = SERIES, colours: dict[str, str] = COLOURS) -> str:
    """A line per scorer across runs; rejected candidates drawn hollow. Inline SVG, no script."""
    if not history:
        return ""
    SERIES, COLOURS = series, colours  # noqa: N806 (the module's defaults, or the caller's lines)
    left, right, top, bottom = 56, 130, 16, 40
    names = [n for n in SERIES if any(n in h["scores"] for h in history)]
    drawn = sorted(names, key=lambda n: n == "model")  # the candidate last, on top of any line it ties with
    step_value, ticks = nice_ticks(max(v for h in history for v in h["scores"].values() if v is not None))
    top_value = step_value * ticks
    step = (width - left - right) / max(len(history) - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if len(history) > 1 else (width - left - right) / 2)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - v / top_value)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{html.escape(metric)} per run">']
    for i in range(ticks + 1):
        v = step_value * i
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{round(v, 10):g}</text>')
    for i in range(len(history)):
        parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">{i + 1}</text>')
    parts.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 6}" text-anchor="middle">run (oldest first)</text>')
    for name in drawn:
        colour, points = COLOURS[name], [(i, h) for i, h in enumerate(history) if name in h["scores"]]
        path = " ".join(f"{x(i):.1f},{y(h['scores'][name]):.1f}" for i, h in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, h in points:
            hollow = name == "model" and h["status"] not in ("published", "blessed", "evaluated")
            tip = html.escape(f"{SERIES[name]} {h['scores'][name]:.4f}, run {h['run_id']} ({h['status']})")
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(h["scores"][name]):.1f}" r="4" stroke="{colour}" '
                         f'stroke-width="2" fill="{"#fff" if hollow else colour}"><title>{tip}</title></circle>')
    for row, name in enumerate(names):
        colour, ly = COLOURS[name], top + 8 + row * 20
        parts.append(f'<line x1="{width - right + 12}" x2="{width - right + 32}" y1="{ly}" y2="{ly}" stroke="{colour}" '
                     f'stroke-width="3"/><text x="{width - right + 38}" y="{ly + 4}">{SERIES[name]}</text>')
    return "".join([*parts, "</svg>"])


OUTCOME_SERIES = {"model": "model's lists", "control": "control (holdout)"}
OUTCOME_COLOURS = {"model": "#1f6feb", "control": "#8c959f"}


def outcomes(dep: Deployment, limit: int = 200) -> dict[str, Any]:
    """Realised outcomes of published lists (`recsys_outcomes`, newest first) and, per scoring
    run, oldest first, the hit rate of each variant's lists: the points of the outcomes chart."""
    from recsys_tasks.scoring import outcomes as tracked

    if not dep.has(dep.tables.outcomes):
        return {"rows": [], "history": []}
    rows = db.read_outcomes(dep.engine, dep.tables, limit=limit)
    history: dict[str, dict[str, Any]] = {}
    for r in reversed(rows):
        if r["strategy"] == tracked.ALL and r["variant"] in OUTCOME_SERIES and r["hit_rate"] is not None:
            point = history.setdefault(r["run_id"], {"run_id": r["run_id"], "status": "published", "k": r["k"], "scores": {}})
            point["scores"][r["variant"]] = r["hit_rate"]
    shown = [{**r, "scored": when(r["scored_at"]), "uplift_text": _uplift(r)} for r in rows]
    return {"rows": shown, "history": list(history.values())}


def outcomes_svg(history: list[dict[str, Any]]) -> str:
    return quality_svg(history, "hit rate@K", series=OUTCOME_SERIES, colours=OUTCOME_COLOURS)


def _uplift(row: dict[str, Any]) -> str:
    if row.get("uplift") is None or row["uplift"] != row["uplift"]:
        return ""
    return f"{row['uplift']:+.1%} ({row['uplift_low']:+.1%} to {row['uplift_high']:+.1%})"


def models(dep: Deployment) -> dict[str, Any]:
    """The registry, newest version first, with each version's lineage and its run's verdict."""
    pointer = registry.production(dep.store)
    status = db.run_statuses(dep.engine, dep.tables) if dep.has_runs() else {}
    versions = []
    for v in registry.list_versions(dep.store):
        data = v.get("data") or {}
        versions.append(
            {
                "version": v["model_version"],
                "production": v["production"],
                "created": when(v.get("created_at")),
                "run_id": v.get("run_id"),
                "run_key": run_key(v["run_id"]) if v.get("run_id") else None,
                "run_status": status.get(v.get("run_id")),
                "ndcg": (v.get("metrics") or {}).get("model", {}).get(dep.config.selection_metric),
                "source": redact(v.get("source_uri") or ""),
                "window": (when(data.get("first_event")), when(data.get("last_event"))),
                "users": data.get("users", v.get("users")),
                "items": data.get("items", v.get("items")),
                "events": data.get("events"),
                "encoder": v.get("encoder"),
                "device": v.get("device"),
                "processes": v.get("training_processes"),
                "best_epoch": v.get("best_epoch"),
                "code_version": v.get("code_version"),
                "rejected": gate_rejection(dep, v["model_version"]),
            }
        )
    history = [*(pointer or {}).get("previous", [])][::-1]
    return {"production": pointer, "promoted": when((pointer or {}).get("promoted_at")), "history": history,
            "versions": versions, "readers": readers_see(dep) if dep.has_runs() else None}


def gate_rejection(dep: Deployment, version: str) -> str | None:
    """The gate's reasons when it rejected `version` (or the candidate it is the refit of),
    from its run's gate.json; None when the gate blessed it or never judged it."""
    run_id = registry.describe(dep.store, version).get("run_id")
    decision = dep.read_json(layout.run_file(run_id, layout.GATE)) if run_id else None
    if not decision or decision.get("blessed"):
        return None
    candidate = decision.get("candidate") or decision.get("model_version") or ""
    if version not in (candidate, layout.refit_version(candidate)):
        return None
    return decision.get("reason") or "no reason recorded"


def readers_see(dep: Deployment) -> dict[str, Any] | None:
    """The run `recommendations_current` shows and the model version that made its lists."""
    current = dep.current_run()
    if current is None:
        return None
    rows, _ = db.run_dates(dep.engine, dep.tables)
    row = next((r for r in rows if r["run_id"] == current), {})
    return {"run_id": current, "model_version": row.get("model_version"), "published": when(row.get("published_at"))}


def readers_note(dep: Deployment) -> str:
    """What a registry change does to readers: nothing until lists are generated again."""
    seen = readers_see(dep)
    now = f"{seen['model_version']}'s lists (run {seen['run_id']})" if seen else "no lists yet"
    return (f"readers of {dep.tables.view} keep {now} until recsys_regenerate runs or the next nightly "
            "publishes: the registry names the model those generate with")


def promote(dep: Deployment, version: str, actor: str, over_gate: bool = False) -> dict[str, Any]:
    """Make `version` production (the Models page and `recsys models promote VERSION`). A version
    the gate rejected needs `over_gate`, a second and explicit confirmation."""
    rejected = gate_rejection(dep, version)
    if rejected and not over_gate:
        raise GateRejectedError(
            f"the gate rejected {version}: {rejected}. Promoting it anyway needs the second confirmation "
            "(the console's box naming the gate, or --over-gate)"
        )
    reason = f"promoted by {actor}" + (" over the gate's rejection" if rejected else "")
    return registry.promote(dep.store, version, reason=reason)


def rollback(dep: Deployment) -> dict[str, Any]:
    """Production back to the version before it, as `recsys models rollback` does."""
    return registry.rollback(dep.store)
