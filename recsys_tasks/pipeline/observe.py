"""Closing the loop: score the lists readers have been seeing, before a new run replaces them."""

from __future__ import annotations

import logging

import pandas as pd

from recsys_tasks import db
from recsys_tasks.clock import utcnow
from recsys_tasks.config import parse_event_weights
from recsys_tasks.pipeline.context import RunContext
from recsys_tasks.pipeline.lists import published_data_end
from recsys_tasks.scoring import outcomes, report
from recsys_tasks.storage import layout

log = logging.getLogger(__name__)

LIST_COLUMNS = ("user_id", "rank", "item_id", "model_version", "strategy", "variant")


def new_events(frame: pd.DataFrame, since: pd.Timestamp) -> pd.DataFrame:
    """Events after `since` on items the user had not touched before it (a published list
    never repeats an item the user has seen, so only these could be hits)."""
    frame = frame.assign(user_id=frame["user_id"].astype(str), item_id=frame["item_id"].astype(str))
    after = frame["ts"] > since
    known = frame.loc[~after, ["user_id", "item_id"]].drop_duplicates()
    fresh = frame[after].merge(known, on=["user_id", "item_id"], how="left", indicator=True)
    return fresh[fresh["_merge"] == "left_only"].drop(columns="_merge")


def track_outcomes(run: RunContext, interactions: str) -> dict:
    """Score the current lists against this log's events since their run's data, per model
    version, strategy and variant; write `recsys_outcomes` and the run's outcomes report."""
    engine, tables = run.db, run.tables
    current = db.current_run_id(engine, tables)
    published = db.get_run(engine, tables, current) if current else None
    if published is None or current == run.run_id:
        log.info("outcome tracking: no published lists yet, nothing to score")
        return {"scored": False, "published_run_id": None}
    since = published_data_end(run, published)
    frame = run.store.read_frame(interactions)
    fresh = new_events(frame, since) if since is not None else frame.iloc[:0]
    if fresh.empty:
        log.info("outcome tracking: no new events since %s (run %s's data): nothing to score", since, current)
        return {"scored": False, "published_run_id": current, "since": str(since)}
    lists = db.read_current_for(engine, tables, sorted(fresh["user_id"].unique()), columns=LIST_COLUMNS)
    catalogue = int(published.get("items") or frame["item_id"].nunique())
    rows = outcomes.score_lists(
        lists, fresh, parse_event_weights(run.config.event_weights), catalogue, db.listed_counts(engine, tables)
    ).assign(
        run_id=run.run_id, published_run_id=current, events_since=since.to_pydatetime(),
        events_until=fresh["ts"].max().to_pydatetime(), scored_at=utcnow(),
    )
    db.write_outcomes(engine, tables, rows)
    text = report.outcomes_table(rows.to_dict("records"))
    run.store.write_json(
        run.path(f"{layout.REPORT}/outcomes.json"),
        {
            "published_run_id": current,
            "events_since": since.isoformat(),
            "new_events": len(fresh),
            "event_weights": run.config.event_weights,
            "rows": rows.drop(columns=["events_since", "events_until", "scored_at"]).to_dict("records"),
        },
    )
    run.store.write_bytes(run.path(f"{layout.REPORT}/outcomes.md"), (
        f"# Outcomes of run {current}'s lists\n\n{len(fresh)} new events after {since.isoformat()} "
        f"(event weights: {run.config.event_weights or 'all 1'}).\n\n```\n{text}\n```\n"
    ).encode())
    log.info("outcome tracking: run %s's lists against %d new events since %s\n%s", current, len(fresh), since, text)
    overall = rows[(rows["strategy"] == outcomes.ALL)].iloc[-1]
    return {"scored": True, "published_run_id": current, "active_users": int(overall["active_users"]),
            "hit_rate": overall["hit_rate"]}
