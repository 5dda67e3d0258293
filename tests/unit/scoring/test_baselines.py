"""The item-to-item baselines the gate compares against: EASE and item-kNN."""

import numpy as np
import pandas as pd
import pytest

from recsys_tasks.data.prepare import build_sequences, item_popularity, leave_one_out
from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
from recsys_tasks.scoring.evaluation import ease_scorer, full_ranking_metrics, item_knn_scorer, popularity_scorer


@pytest.fixture(scope="module")
def data():
    seqs = build_sequences(generate_interactions(SyntheticSpec(users=400, items=150, topics=6, seed=11)))
    return seqs, leave_one_out(seqs)


def test_item_knn_scores_equal_a_dense_cosine_computation(data):
    seqs, split = data
    n = seqs.n_items + 1
    x = np.zeros((seqs.n_users, n))
    for u in range(seqs.n_users):
        x[u, seqs.items[seqs.offsets[u] : split.train_end[u]]] = 1.0
    counts = x.T @ x
    norms = np.sqrt(np.diag(counts))
    norms[norms == 0] = 1.0
    cosine = counts / np.outer(norms, norms)
    np.fill_diagonal(cosine, 0.0)
    cosine[:, 0] = 0.0
    users = np.arange(0, seqs.n_users, 7)
    expected = x[users] @ cosine  # every neighbour kept: nothing truncated

    scorer = item_knn_scorer(seqs, split.train_end, neighbours=n, block_cells=1000)  # several blocks
    scores = scorer(users, seqs.offsets[users], split.train_end[users]).numpy()
    assert np.isneginf(scores[:, 0]).all()
    assert np.allclose(scores[:, 1:], expected[:, 1:], atol=1e-5)


@pytest.mark.parametrize("make", [ease_scorer, item_knn_scorer], ids=["ease", "item_knn"])
def test_item_to_item_baselines_beat_popularity_on_sequential_data(data, make):
    seqs, split = data
    popularity = item_popularity(seqs, split)
    test_end = split.train_end + 1
    baseline = full_ranking_metrics(make(seqs, split.train_end), seqs, split.eval_users, test_end)["NDCG@10"]
    popular = full_ranking_metrics(popularity_scorer(popularity), seqs, split.eval_users, test_end)["NDCG@10"]
    assert baseline > popular


@pytest.mark.parametrize("exclude_history", [True, False])
def test_popularity_ranked_once_equals_ranking_it_for_every_user(exclude_history):
    """One ranking for everyone (#30): the sorted catalogue and each history, never users x items."""
    from recsys_tasks.scoring.evaluation import target_ranks

    frame = generate_interactions(SyntheticSpec(users=300, items=80, topics=4, seed=5))
    repeats = frame.groupby("user_id").tail(1).assign(ts=lambda f: f["ts"] + pd.Timedelta(hours=1)).iloc[::2]
    repeats["item_id"] = frame.groupby("user_id")["item_id"].first().reindex(repeats["user_id"]).to_numpy()
    seqs = build_sequences(pd.concat([frame, repeats]), keep="all")  # every other user's last item repeats their first
    split = leave_one_out(seqs)
    popularity = item_popularity(seqs, split)
    popularity[5:15] = popularity[5]  # ties
    once = popularity_scorer(popularity)

    def per_user(users, starts, ends):  # the same scores, without the shortcut
        return once(users, starts, ends)

    users, end = np.arange(seqs.n_users), split.train_end + 1  # the test item, after the validation item
    fast = target_ranks(once, seqs, users, end, top_k=10, exclude_history=exclude_history)
    slow = target_ranks(per_user, seqs, users, end, top_k=10, exclude_history=exclude_history)
    np.testing.assert_array_equal(fast[0], slow[0])
    repeated = np.array([seqs.items[end[u]] in set(seqs.items[seqs.offsets[u] : end[u]]) for u in users])
    assert 0 < repeated.sum() < len(users) and (fast[0] < seqs.n_items).any()
    if exclude_history:
        assert (fast[0][repeated] == seqs.n_items).all()  # a repeated target is a miss, as the published code counts it
    scores = once.constant.numpy()
    # equal scores may come in another order; the lists' scores, and the history rule, are the same
    np.testing.assert_array_equal(np.sort(scores[fast[1]], axis=1), np.sort(scores[slow[1]], axis=1))
    for user in users if exclude_history else []:
        history = set(seqs.items[seqs.offsets[user] : end[user]])
        assert not history & set(fast[1][user])
