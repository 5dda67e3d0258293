"""The item-transition prior: successor shares counted by hand, the blend against its dense formula,
and a validation choice that keeps the model alone when the prior does not help."""

import numpy as np
import torch

from recsys_tasks.data.prepare import Sequences
from recsys_tasks.scoring.transitions import blend, choose_blend, transition_prior, with_prior


def sequences(rows):
    items = np.concatenate([np.asarray(r) for r in rows])
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    n_items = int(items.max())
    return Sequences(user_ids=[f"u{i}" for i in range(len(rows))], item_ids=[f"i{t}" for t in range(1, n_items + 1)],
                     offsets=offsets, items=items)


def test_successor_shares_are_counted_within_each_users_training_part():
    seqs = sequences([[1, 2, 3, 1, 3], [1, 2, 2]])
    prior = transition_prior(seqs, np.array([4, 8]))  # user 0's last item is held out; user 1's end runs past its events
    assert prior.one_hop.toarray()[1:].tolist() == [[0, 0, 1, 0], [0, 0, 0.5, 0.5], [0, 1, 0, 0]]
    assert prior.two_hop.toarray()[1:].tolist() == [[0, 0, 0.5, 0.5], [0, 1, 0, 0], [0, 0, 0, 0]]


def test_the_in_place_blend_equals_the_dense_mixture():
    seqs = sequences([[1, 2, 3, 4], [2, 3, 1], [3, 4, 2, 1]])
    prior = transition_prior(seqs, seqs.offsets[1:])
    logits = torch.randn(3, 5)
    rows = prior.rows(np.array([1, 2, 3]), 0.3)
    masked = logits.clone()
    masked[:, 0] = float("-inf")
    expected = torch.log(0.8 * torch.softmax(masked, 1) + 0.2 * torch.as_tensor(rows.toarray(), dtype=torch.float32))
    got = blend(logits.clone(), rows, 0.2)
    assert torch.allclose(got[:, 1:], expected[:, 1:], atol=1e-5)
    assert torch.equal(blend(logits.clone(), rows, 0.0), logits)


def test_validation_chooses_the_prior_only_where_it_helps():
    rng = np.random.default_rng(0)
    # every user walks the same cycle 1 -> 2 -> ... -> 8 -> 1: the successor is certain
    cycle = [[(s + i) % 8 + 1 for i in range(6)] for s in rng.integers(0, 8, 200)]
    seqs = sequences(cycle)
    train_end = seqs.offsets[1:] - 2
    users = np.arange(seqs.n_users)

    def uniform(users, starts, ends):
        return torch.zeros(len(users), seqs.n_items + 1) + torch.rand(len(users), seqs.n_items + 1) * 1e-3

    (weight, _), table = choose_blend(uniform, transition_prior(seqs, train_end), seqs, users, train_end)
    assert weight > 0 and table[f"{weight}/0.0"] > 0.99 > table["0.0/0.0"]

    noisy = sequences([list(rng.permutation(8)[:6] + 1) for _ in range(200)])

    def oracle(users, starts, ends):  # already knows the next item: the prior can only add noise
        scores = torch.zeros(len(users), noisy.n_items + 1)
        scores[torch.arange(len(users)), torch.as_tensor(noisy.items[ends])] = 5.0
        return scores

    (weight, _), _ = choose_blend(oracle, transition_prior(noisy, noisy.offsets[1:] - 2), noisy, users, noisy.offsets[1:] - 2)
    assert weight == 0.0


def test_a_model_without_a_chosen_blend_scores_as_before():
    seqs = sequences([[1, 2, 3]])

    def scorer(users, starts, ends):
        return torch.ones(len(users), 4)

    assert with_prior(scorer, seqs, None) is scorer
    assert with_prior(scorer, seqs, {"weight": 0.0, "two_hop": 0.3}) is scorer
    assert with_prior(scorer, seqs, {"weight": 0.2, "two_hop": 0.0}) is not scorer
