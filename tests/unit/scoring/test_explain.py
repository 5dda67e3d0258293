"""Every row says why it is there and what its score means (scoring/explain.py)."""

import numpy as np
import torch

from recsys_tasks.data.prepare import Sequences
from recsys_tasks.scoring.evaluation import popularity_scorer
from recsys_tasks.scoring.explain import nearest_history_items, unit_rows
from recsys_tasks.scoring.inference import embedding_scorer, top_k_for_users

# items: a and b point east, c north, d mostly north, e (no events: a new item) nearly north
VECTORS = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.8], [0.1, 1.0]], dtype=np.float32)
SEQS = Sequences(
    user_ids=["u", "v", "w"], item_ids=["a", "b", "c", "d", "e"],
    offsets=np.array([0, 2, 3, 5]), items=np.array([1, 3, 2, 1, 4]),  # u: a, c; v: b; w: a, d
)


def test_the_reason_is_the_history_item_nearest_the_recommendation():
    units = unit_rows(VECTORS)
    users, tokens = np.array([0, 0, 1]), np.array([2, 5, 4])  # u gets b and e, v gets d
    because, cosines = nearest_history_items(units, SEQS, users, tokens)
    assert because.tolist() == [1, 3, 2]  # b like a (not c); e like c; d like v's only item b
    assert np.isclose(cosines[0], 0.9 / np.hypot(0.9, 0.1)) and np.all(cosines <= 1.0 + 1e-6)


def test_rows_carry_a_reason_and_a_probability_that_falls_with_rank():
    logits = torch.tensor([[0.0, 0.0], *VECTORS.tolist()])  # row 0 is padding
    user_vectors = torch.tensor([[0.2, 1.0], [1.0, 0.0], [0.0, 0.0]])
    frame = top_k_for_users(embedding_scorer(user_vectors, logits), SEQS, np.array([0, 1, 2]), k=3, min_history=1,
                            units=unit_rows(VECTORS))
    u = frame[frame["user_id"] == "u"]
    assert u["item_id"].tolist() == ["e", "d", "b"]
    assert u["reason"].tolist() == ["new_item", "history", "history"]  # e has no events yet
    assert u["because_item_id"].tolist() == ["c", "c", "a"]
    # the softmax over the whole catalogue (seen items included), by hand
    scores = user_vectors[0] @ logits[1:].T
    expected = torch.softmax(scores, 0)[[4, 3, 1]].numpy()
    assert np.allclose(u["probability"].to_numpy(), expected, atol=1e-6)
    for _, rows in frame.groupby("user_id"):
        chance = rows.sort_values("rank")["probability"].to_numpy()
        assert np.all((chance >= 0) & (chance <= 1)) and np.all(np.diff(chance) <= 1e-12)


def test_fallback_and_popularity_rows_say_popular_with_their_share_of_events():
    counts = np.bincount(SEQS.items, minlength=SEQS.n_items + 1).astype(np.float64)  # a: 2, b, c, d: 1 each
    frame = top_k_for_users(popularity_scorer(counts), SEQS, np.array([1]), k=2, min_history=5, units=unit_rows(VECTORS))
    assert frame["strategy"].tolist() == ["popularity", "popularity"]
    assert frame["reason"].tolist() == ["popular", "popular"] and frame["because_item_id"].isna().all()
    assert frame["item_id"].tolist()[0] == "a" and frame["probability"].tolist() == [0.4, 0.2]
    night = top_k_for_users(popularity_scorer(counts), SEQS, np.array([1]), k=2, strategy="popularity", probability="share")
    assert night["probability"].tolist() == [0.4, 0.2] and night["reason"].tolist() == ["popular", "popular"]
