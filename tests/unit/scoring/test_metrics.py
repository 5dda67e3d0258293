import math

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_tasks.data.prepare import Sequences
from recsys_tasks.metrics import catalogue_metrics, hit_rate_at_k, list_overlap, mrr, ndcg_at_k, ranking_metrics
from recsys_tasks.scoring.evaluation import popularity_scorer, target_ranks


def test_hit_rate_counts_targets_inside_the_cutoff():
    assert hit_rate_at_k(np.array([0, 4, 5, 100]), 5) == 0.5
    assert hit_rate_at_k(np.array([]), 5) == 0.0


def test_ndcg_hand_computed():
    # ranks 0, 1, 2 -> gains 1, 1/log2(3), 1/log2(4) = 0.5; rank 10 is outside the top 10
    ranks = np.array([0, 1, 3, 10])
    expected = (1.0 + 1.0 / math.log2(3) + 1.0 / math.log2(5) + 0.0) / 4
    assert ndcg_at_k(ranks, 10) == pytest.approx(expected)
    assert ndcg_at_k(np.array([2]), 10) == pytest.approx(0.5)


def test_mrr_and_bundle():
    assert mrr(np.array([0, 1, 3])) == pytest.approx((1 + 0.5 + 0.25) / 3)
    out = ranking_metrics(np.array([0, 9]), ks=(10,))
    assert out["HR@10"] == out["Recall@10"] == 1.0 and set(out) == {"HR@10", "Recall@10", "NDCG@10", "MRR"}


def test_ranking_excludes_seen_items_and_counts_ties_against_the_target():
    # one user: history [1, 2], target 3; items 1 and 2 are the most popular but seen
    seqs = Sequences(user_ids=["u"], item_ids=["a", "b", "c", "d"], offsets=np.array([0, 3]), items=np.array([1, 2, 3]))
    popularity = np.array([0.0, 10.0, 9.0, 5.0, 5.0])  # token 3 ties with token 4
    ranks, _ = target_ranks(popularity_scorer(popularity), seqs, np.array([0]), np.array([2]))
    assert ranks.tolist() == [1]  # seen items drop out; the tie puts item 4 ahead


def test_popularity_scorer_does_not_rank_padding():
    scores = popularity_scorer(np.array([100.0, 1.0]))(np.array([0]), np.array([0]), np.array([0]))
    assert torch.isinf(scores[0, 0])


def test_catalogue_coverage_and_popularity_percentile_by_hand():
    popularity = np.array([0.0, 1.0, 5.0, 3.0, 10.0])  # tokens 1..4; percentiles 0, 2/3, 1/3, 1
    tops = np.array([[4, 2], [4, 3]])
    out = catalogue_metrics(tops, popularity, k=2)
    assert out["coverage@2"] == pytest.approx(3 / 4)
    assert out["popularity_percentile@2"] == pytest.approx((1 + 2 / 3 + 1 + 1 / 3) / 4)


def test_ndcg_matches_an_independent_formulation():
    # the textbook form: DCG over a 0/1 relevance list of length K, divided by the ideal DCG
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 30, size=200)
    for k in (5, 10, 20):
        relevance = np.zeros((len(ranks), k))
        hit = ranks < k
        relevance[np.flatnonzero(hit), ranks[hit]] = 1.0
        dcg = (relevance / np.log2(np.arange(2, k + 2))).sum(1)
        assert ndcg_at_k(ranks, k) == pytest.approx(dcg.mean())


def test_overlap_and_churn_with_the_published_lists_by_hand():
    def lists(rows):
        return pd.DataFrame([(u, i) for u, items in rows.items() for i in items], columns=["user_id", "item_id"])

    candidate = lists({"a": ["x", "y"], "b": ["x", "z"], "new": ["x", "y"]})
    published = lists({"a": ["y", "x"], "b": ["w", "v"], "gone": ["x", "y"]})
    out = list_overlap(candidate, published, k=2, n_items=10)
    # a keeps both items (order does not matter), b keeps none; "new" and "gone" are not compared
    assert out["users"] == 2 and out["overlap@2"] == pytest.approx(0.5) and out["churn@2"] == pytest.approx(0.5)
    assert out["coverage_candidate"] == pytest.approx(0.3) and out["coverage_published"] == pytest.approx(0.4)
    assert out["coverage_change"] == pytest.approx(-0.1)
    assert list_overlap(candidate, lists({"other": ["x"]}), k=2, n_items=10) == {"users": 0}


def test_users_are_ranked_in_batches_of_similar_length_and_answered_in_their_own_order():
    """Evaluation batches users by history length and cuts each batch to its longest history:
    every user's rank is what scoring that user alone at max_len gives, in the order asked."""
    from recsys_tasks.config import ModelConfig
    from recsys_tasks.data.prepare import left_padded_windows
    from recsys_tasks.learning.model import SequenceEncoder
    from recsys_tasks.scoring.evaluation import model_scorer

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 15, size=40)  # some longer than max_len 8
    items = rng.integers(1, 31, size=int(lengths.sum()))
    seqs = Sequences(user_ids=[str(u) for u in range(40)], item_ids=[str(i) for i in range(30)],
                     offsets=np.concatenate([[0], np.cumsum(lengths)]), items=items)
    torch.manual_seed(0)
    model = SequenceEncoder(30, ModelConfig(d_model=16, n_layers=2, n_heads=2, max_len=8, dropout=0.0,
                                            frequency_mix=0.5)).eval()
    users = rng.permutation(40)[:30]
    history_end = seqs.offsets[1:] - 1  # the last item of each user is the target
    ranks, tops = target_ranks(model_scorer(model, seqs, torch.device("cpu")), seqs, users, history_end, batch_size=7, top_k=3)
    for i, u in enumerate(users):
        window = torch.as_tensor(left_padded_windows(seqs.items, seqs.offsets[[u]], history_end[[u]], 8))
        with torch.no_grad():
            scores = model.item_logits(model.last_hidden(window))
        alone, alone_tops = target_ranks(lambda *_, s=scores: s.clone(), seqs, np.array([u]), history_end, top_k=3)
        assert ranks[i] == alone[0] and tops[i].tolist() == alone_tops[0].tolist()
