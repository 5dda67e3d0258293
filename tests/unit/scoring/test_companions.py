"""What a run publishes beside the users' lists: the trending fallback and similar items."""

import numpy as np
import pandas as pd

from recsys_tasks.scoring.companions import similar, trending


def test_trending_counts_the_recent_window_and_skips_blocked_items():
    now = pd.Timestamp("2026-01-31", tz="UTC")
    frame = pd.DataFrame({
        "item_id": ["old"] * 9 + ["a"] * 3 + ["b"] * 2 + ["gone"] * 5 + ["c"],
        "ts": [now - pd.Timedelta(days=30)] * 9 + [now] * 3 + [now - pd.Timedelta(days=2)] * 2 + [now] * 5
        + [now - pd.Timedelta(days=6)],
    })
    items = ["old", "a", "b", "gone", "c", "never"]
    blocked = np.zeros(len(items) + 1, dtype=bool)
    blocked[4] = True  # "gone" (token 4) is unavailable
    out = trending(frame, items, days=7, k=5, blocked=blocked)
    assert out["item_id"].tolist() == ["a", "b", "c", "old", "never"]  # the window first, then all time
    assert out["score"].tolist() == [3.0, 2.0, 1.0, 0.0, 0.0] and out["rank"].tolist() == [1, 2, 3, 4, 5]


def test_similar_items_are_nearest_by_cosine_never_themselves_nor_blocked():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.95, 0.0], [0.0, 0.0]])
    items = ["a", "a2", "b", "b2", "hidden", "no_vector"]
    blocked = np.zeros(len(items) + 1, dtype=bool)
    blocked[5] = True  # "hidden"
    out = similar(vectors, items, k=2, blocked=blocked, chunk=2)  # chunks smaller than the catalogue
    neighbours = out.groupby("item_id")["similar_item_id"].apply(list).to_dict()
    assert neighbours == {"a": ["a2", "b2"], "a2": ["a", "b2"], "b": ["b2", "a2"], "b2": ["b", "a2"]}
    assert (out.groupby("item_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert out.loc[(out["item_id"] == "a") & (out["rank"] == 1), "score"].item() > 0.99
