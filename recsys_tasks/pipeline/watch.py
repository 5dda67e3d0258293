"""Watching what readers see, from outside the nightly: stale lists and a missed deadline.

`recsys_watch` runs this every 15 minutes. It is a DAG of its own, not a deadline callback of
the nightly, because the alarms that matter most are the nights that never ran (a stopped
scheduler, a paused DAG) and the lists that stopped changing, and neither has a nightly run to
hang a callback on.

- **Stale lists**: the run readers see was published more than `RECSYS_MAX_LIST_AGE_H` hours
  ago (default 30): one alert per published run.
- **Missed deadline**: at `RECSYS_PUBLISH_DEADLINE` (HH:MM UTC, default 06:00) no run has
  published, or been judged by the gate, within the 24 hours before it: one alert per deadline,
  saying which run is late and why (still running which stage, failed with what, never started).
Alerts go through the run's notifiers (`notify`); each check also sends `lists.age_hours`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pandas as pd

from recsys_tasks import db
from recsys_tasks.clock import as_utc
from recsys_tasks.config import environment
from recsys_tasks.pipeline import telemetry
from recsys_tasks.pipeline.context import RunContext
from recsys_tasks.pipeline.notify import AlertTargets, notify_watch
from recsys_tasks.storage import layout

log = logging.getLogger(__name__)

DONE = {"published", "rejected"}  # a night that ended with lists, or with the gate keeping the old ones


def last_deadline(now: pd.Timestamp, hour: int, minute: int) -> pd.Timestamp:
    """The most recent HH:MM UTC at or before `now`."""
    today = now.normalize() + pd.Timedelta(hours=hour, minutes=minute)
    return today if today <= now else today - pd.Timedelta(days=1)


def why_late(run: RunContext, since: pd.Timestamp, now: pd.Timestamp) -> str:
    """What the newest run started since `since` is doing, or that none started."""
    runs = [r for r in db.recent_runs(run.db, run.tables, limit=50)
            if r["run_id"] != run.run_id and (as_utc(r.get("started_at")) or since) > since]
    if not runs:
        return f"no run has started since {since:%Y-%m-%d %H:%M} UTC: is the scheduler running and the DAG unpaused?"
    latest = runs[0]
    if latest["status"] in {"failed", "failed_validation", "superseded"}:
        return f"run {latest['run_id']} ended {latest['status']}: {latest.get('message') or 'no message'}"
    stages = db.stage_timings(run.db, run.tables, latest["run_id"])
    active = [s for s in stages if s["status"] == "running"]
    if active:
        since_stage = as_utc(active[-1]["started_at"])
        minutes = (now - since_stage).total_seconds() / 60 if since_stage is not None else float("nan")
        return f"run {latest['run_id']} is still running: {active[-1]['stage']} for {minutes:.0f} min"
    return f"run {latest['run_id']} is {latest['status']} (last stage: {stages[-1]['stage'] if stages else 'none yet'})"


def watch(run: RunContext, now: datetime | None = None) -> dict:
    """Check the published lists' age and tonight's deadline; alert once for each problem."""
    now = as_utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    current = db.current_run_id(run.db, run.tables)
    published = db.get_run(run.db, run.tables, current) if current else None
    published_at = as_utc(published.get("published_at")) if published else None
    age = (now - published_at).total_seconds() / 3600 if published_at is not None else None
    if age is not None:
        telemetry.gauge("lists.age_hours", round(age, 3))
    sees = (f"readers see run {current}'s lists, published {published_at:%Y-%m-%d %H:%M} UTC ({age:.1f} h ago)"
            if age is not None else "readers have no lists yet")
    alerts = []
    limit = environment.max_list_age_hours()
    if age is not None and age > limit:
        alerts.append(("stale", f"stale-{current}", {
            "run_id": current, "age_hours": round(age, 1), "limit_hours": limit,
            "reason": f"{sees}; the limit is {limit:g} h"}))
    deadline = environment.publish_deadline()
    if deadline is not None:
        due = last_deadline(now, *deadline)
        since = due - timedelta(days=1)
        ended = [r for r in db.recent_runs(run.db, run.tables, limit=50)
                 if r["status"] in DONE and (as_utc(r.get("updated_at")) or since) > since]
        if not ended:
            alerts.append(("late", f"late-{due:%Y%m%dT%H%M}", {
                "due": due.isoformat(), "run_id": current,
                "reason": f"no lists published for the night due {due:%Y-%m-%d %H:%M} UTC ({sees}). "
                          f"Why: {why_late(run, since, now)}"}))
    sent = []
    targets = AlertTargets.from_env()
    for kind, key, event in alerts:
        marker = f"{layout.ALERTS}/{key}.json"
        if run.store.exists(marker):
            continue
        log.warning("%s: %s", kind, event["reason"])
        reached = notify_watch(targets, kind, event) if targets else []
        run.store.write_json(marker, {"kind": kind, "sent_at": now.isoformat(), "to": reached, **event})
        sent.append(kind)
    if not alerts:
        log.info("watch: %s; nothing late", sees)
    return {"age_hours": None if age is None else round(age, 3), "alerts": [a[0] for a in alerts], "sent": sent}
