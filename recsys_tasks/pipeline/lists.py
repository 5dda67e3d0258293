"""Which users' lists a night makes (`lists`): everyone's (`all`), or, with lists already
published, only those that can have changed (`changed`): users with events after the data of
the run readers see, users that run had no list for, and users whose list holds an item now
unavailable, excluded or gone from the catalogue. Every other user keeps that run's list,
copied into tonight's run inside the same atomic publish (db.publish_recommendations'
`carry_from`), so readers always see one complete run.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from recsys_tasks import PROGRESS, db
from recsys_tasks.clock import as_utc
from recsys_tasks.data.prepare import Sequences
from recsys_tasks.errors import ArtifactNotFoundError
from recsys_tasks.pipeline.context import RunContext
from recsys_tasks.pipeline.inputs import business_rules
from recsys_tasks.storage import layout

log = logging.getLogger(__name__)


def published_data_end(run: RunContext, published: dict) -> pd.Timestamp | None:
    """The newest event the published run was trained on: later events are what came after
    its lists. Its prepared.json says; the publish time stands in when that is gone."""
    key = layout.run_file(published["run_id"], layout.PREPARED)
    try:
        last = run.store.read_json(key).get("last_event")
    except ArtifactNotFoundError:
        last = None
    if last:
        return pd.Timestamp(last)
    return as_utc(published.get("published_at"))


def published_run(run: RunContext) -> tuple[str, pd.Timestamp] | None:
    """With `lists=changed`: the run readers see (not this one) and the end of its data; else None."""
    if run.config.lists != "changed":
        return None
    current = db.current_run_id(run.db, run.tables)
    published = db.get_run(run.db, run.tables, current) if current and current != run.run_id else None
    since = published_data_end(run, published) if published else None
    return (current, as_utc(since)) if since is not None else None


def active_since(run: RunContext, since: pd.Timestamp) -> pd.Index:
    """The ids of tonight's users with events after `since`."""
    frame = run.store.read_frame(run.path(layout.INTERACTIONS), columns=["user_id", "ts"])
    return pd.Index(frame.loc[pd.to_datetime(frame["ts"], utc=True) > since, "user_id"].astype(str).unique())


def to_train(run: RunContext, seqs: Sequences) -> np.ndarray | None:
    """A warm `lists=changed` night's training users (mask): those with events since the
    published run's data, plus a seeded `replay_share` of the others, so the model keeps what it
    knew; None (everyone) otherwise."""
    published = published_run(run)
    if published is None:
        return None
    users = pd.Index(np.asarray(seqs.user_ids, dtype=object).astype(str))
    fresh = users.isin(active_since(run, published[1]))
    replay = np.random.default_rng(run.config.train.seed).random(seqs.n_users) < run.config.replay_share
    chosen = fresh | replay
    log.info("lists=changed: training on %d users with new events and a replay sample of %d of the %d others",
             int(fresh.sum()), int((replay & ~fresh).sum()), int((~fresh).sum()), extra=PROGRESS)
    return chosen


def to_regenerate(run: RunContext, seqs: Sequences) -> tuple[np.ndarray, str | None]:
    """Tonight's user indices whose lists are made tonight, and the run the others' lists are
    carried from (None: nobody's is)."""
    everyone = np.arange(seqs.n_users)
    published = published_run(run)
    if published is None:
        return everyone, None
    current, since = published
    users = pd.Index(np.asarray(seqs.user_ids, dtype=object).astype(str))
    listed, listed_items = db.run_listing(run.db, run.tables, current)
    blocked, _ = business_rules(run, seqs)
    allowed = {item for token, item in enumerate(seqs.item_ids, start=1) if blocked is None or not blocked[token]}
    gone = sorted(listed_items - allowed)
    active = users.isin(active_since(run, since))
    new = ~users.isin(list(listed))
    stale = users.isin(list(db.users_listing(run.db, run.tables, current, gone))) if gone else np.zeros(len(users), bool)
    changed = active | new | stale
    log.info("lists=changed: %d of %d users get new lists (%d with events after %s, %d new, %d listing an item now "
             "unavailable); the rest keep run %s's", int(changed.sum()), seqs.n_users, int(active.sum()), since,
             int(new.sum()), int(stale.sum()), current, extra=PROGRESS)
    return everyone[changed], current
