"""Synthetic interaction logs with real sequential structure, deterministic by seed.

Items belong to latent topics and have Zipf popularity within them. Each item has a few
"successor" items (mostly in its own topic), so what a user does next depends on what they
just did; users hold a topic preference that drifts over time. A sequence model can learn
the transitions and the drift, so it beats popularity, which is what a demo must show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

EVENT_TYPES = ("view", "click", "purchase")


@dataclass(frozen=True)
class SyntheticSpec:
    users: int = 5000
    items: int = 2000
    topics: int = 20
    successors: int = 3  # next-item candidates per item
    follow_prob: float = 0.6  # chance the next item is a successor of the last one
    drift_prob: float = 0.1  # chance per step that the user moves to another topic
    mean_length: float = 15.0  # mean events per user (geometric-like, at least min_length)
    min_length: int = 4
    max_length: int = 80
    zipf_exponent: float = 1.1
    seed: int = 0
    start: str = "2026-01-01"
    days: int = 60


def generate_interactions(spec: SyntheticSpec) -> pd.DataFrame:
    """Canonical frame `user_id, item_id, ts, event_type, value`, sorted by user and time."""
    if spec.users < 1 or spec.items < spec.topics or spec.topics < 1:
        raise ValueError("need users >= 1 and items >= topics >= 1")
    rng = np.random.default_rng(spec.seed)
    item_topic = rng.integers(0, spec.topics, size=spec.items)
    topic_items = [np.flatnonzero(item_topic == t) for t in range(spec.topics)]
    topic_items = [ids if len(ids) else rng.integers(0, spec.items, size=1) for ids in topic_items]
    topic_probs = []
    for ids in topic_items:
        weights = 1.0 / np.arange(1, len(ids) + 1) ** spec.zipf_exponent
        rng.shuffle(weights)
        topic_probs.append(weights / weights.sum())

    # successors: mostly same-topic items, so transitions and topics reinforce each other
    successors = np.empty((spec.items, spec.successors), dtype=np.int64)
    for item in range(spec.items):
        pool = topic_items[item_topic[item]]
        same = rng.choice(pool, size=spec.successors, p=topic_probs[item_topic[item]])
        other = rng.integers(0, spec.items, size=spec.successors)
        successors[item] = np.where(rng.random(spec.successors) < 0.8, same, other)

    lengths = spec.min_length + rng.geometric(1.0 / max(spec.mean_length - spec.min_length, 1.0), size=spec.users)
    lengths = np.minimum(lengths, spec.max_length)
    start = pd.Timestamp(spec.start, tz="UTC").value // 10**9
    horizon = spec.days * 86400

    users, items, stamps = [], [], []
    for user in range(spec.users):
        topic = rng.integers(spec.topics)
        seen: set[int] = set()
        t = start + rng.integers(0, horizon // 2)
        last = -1
        for _ in range(lengths[user]):
            if rng.random() < spec.drift_prob:
                topic = rng.integers(spec.topics)
            for _attempt in range(10):  # users rarely repeat an item; resample if they would
                if last >= 0 and rng.random() < spec.follow_prob:
                    item = int(successors[last, rng.integers(spec.successors)])
                else:
                    item = int(rng.choice(topic_items[topic], p=topic_probs[topic]))
                if item not in seen:
                    break
            else:
                continue
            seen.add(item)
            t += int(rng.exponential(3600 * 6)) + 1
            users.append(user)
            items.append(item)
            stamps.append(min(t, start + horizon))
            last = item

    n = len(users)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in items],
            "ts": pd.to_datetime(np.asarray(stamps, dtype=np.int64), unit="s", utc=True),
            "event_type": np.asarray(EVENT_TYPES)[rng.choice(3, size=n, p=[0.7, 0.25, 0.05])],
            "value": np.ones(n, dtype=np.float64),
        }
    )
    return frame


TOPIC_WORDS = ("garden", "kitchen", "running", "camping", "makeup", "skincare", "office", "gaming", "baby", "audio",
               "cycling", "coffee", "books", "travel", "pets", "fishing", "yoga", "tools", "music", "tea")


def generate_catalogue(spec: SyntheticSpec) -> pd.DataFrame:
    """The catalogue of `generate_interactions(spec)`'s items: `item_id, available, title,
    category, colour`. The title and category name the item's latent topic (the same draw as
    the log's), so content predicts behaviour; the colour is noise."""
    rng = np.random.default_rng(spec.seed)
    item_topic = rng.integers(0, spec.topics, size=spec.items)  # the log's first draw
    words = [TOPIC_WORDS[t % len(TOPIC_WORDS)] + ("" if t < len(TOPIC_WORDS) else str(t)) for t in range(spec.topics)]
    noise = np.random.default_rng(spec.seed + 1)
    colours = np.asarray(["red", "blue", "green", "black", "white"])[noise.integers(0, 5, size=spec.items)]
    return pd.DataFrame({
        "item_id": [f"i{i}" for i in range(spec.items)],
        "available": True,
        "title": [f"{words[t]} product {i}" for i, t in enumerate(item_topic)],
        "category": [words[t] for t in item_topic],
        "colour": colours,
    })
