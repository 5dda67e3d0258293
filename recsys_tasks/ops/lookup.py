"""The console's Users page: one user's published list beside their recent events, and one
item's similar items, as readers see them (one run, even while a publish switches)."""

from __future__ import annotations

import io
from collections import OrderedDict
from threading import Lock
from typing import Any

import pandas as pd

from recsys_tasks import db
from recsys_tasks.ops.console import when
from recsys_tasks.storage import layout
from recsys_tasks.storage.deployment import Deployment
from recsys_tasks.storage.layout import run_key


def sample_users(dep: Deployment, n: int = 6) -> list[str]:
    return db.sample_users(dep.engine, dep.tables, n) if dep.current_run() is not None else []


def user_lookup(dep: Deployment, user_id: str, history: int = 20) -> dict[str, Any]:
    """A user's published list, or the run's fallback list for a user without one, read in one
    statement (the reader query: both from one run, even while a publish switches), beside the
    last `history` events of that user in the log of the run the list comes from."""
    columns = ["rank", "item_id", "title", "score", "probability", "reason", "strategy", "variant"]
    if dep.current_run() is None:
        return {"user_id": user_id, "run_id": None, "rows": [], "fallback": [], "history": [], "columns": []}
    rows, run_id = db.user_list(dep.engine, dep.tables, user_id)
    own = [r for r in rows if r["strategy"] != "fallback"]
    fallback = [{c: r[c] for c in ("rank", "item_id", "score")} for r in rows if r["strategy"] == "fallback"]
    # names from the run's catalogue snapshot (catalogue text: the template escapes it)
    titles = db.item_titles(dep.engine, dep.tables, run_id, [r[c] for r in rows for c in ("item_id", "because_item_id")
                                                             if r.get(c)]) if run_id and dep.has(dep.tables.items) else {}
    for r in fallback:
        r["title"] = titles.get(r["item_id"])
    return {
        "user_id": user_id, "run_id": run_id, "columns": columns,
        "rows": [{**{c: r.get(c) for c in columns}, "title": titles.get(r["item_id"]), "because_item_id": r["because_item_id"],
                  "because_title": titles.get(r["because_item_id"]), "model_version": r["model_version"]} for r in own],
        "model_version": own[0]["model_version"] if own else None, "fallback": fallback,
        "history": recent_events(dep, run_key(run_id), user_id, history) if run_id else [],
    }


_EVENTS: OrderedDict[tuple[str, str], pd.DataFrame] = OrderedDict()  # a run's log, read once per process
_EVENTS_LOCK = Lock()


def _events(dep: Deployment, key: str) -> pd.DataFrame | None:
    """The run's extracted log, sorted by user (a run's artifacts never change once written)."""
    cache_key = (dep.config.artifact_root, key)
    with _EVENTS_LOCK:
        if cache_key in _EVENTS:
            _EVENTS.move_to_end(cache_key)
            return _EVENTS[cache_key]
    artifact = layout.run_file(key, layout.INTERACTIONS)
    if not dep.store.exists(artifact):
        return None
    frame = pd.read_parquet(io.BytesIO(dep.store.read_bytes(artifact)))
    frame = frame[[c for c in ("user_id", "item_id", "ts", "event_type", "value") if c in frame]]
    frame = frame.assign(user_id=frame["user_id"].astype(str)).sort_values(["user_id", "ts"], kind="stable")
    with _EVENTS_LOCK:
        _EVENTS[cache_key] = frame.reset_index(drop=True)
        while len(_EVENTS) > 2:
            _EVENTS.popitem(last=False)
    return frame


def recent_events(dep: Deployment, key: str, user_id: str, n: int = 20) -> list[dict[str, Any]]:
    """The user's last `n` events in a run's log, newest first."""
    frame = _events(dep, key)
    if frame is None:
        return []
    users = frame["user_id"].to_numpy()
    lo, hi = users.searchsorted(user_id, "left"), users.searchsorted(user_id, "right")
    last = frame.iloc[max(lo, hi - n) : hi].iloc[::-1]
    return [{**r, "ts": when(r["ts"])} for r in last.to_dict("records")]


def similar_items(dep: Deployment, item_id: str, limit: int = 20) -> dict[str, Any]:
    """An item's published neighbours, when `similar_items_current` exists."""
    if not dep.has(dep.tables.similar_view):
        return {"item_id": item_id, "available": False, "rows": []}
    return {"item_id": item_id, "available": True, "rows": db.similar_items(dep.engine, dep.tables, item_id, limit)}
