"""The item-to-item baselines the gate compares against: EASE and item-kNN."""

import numpy as np
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
