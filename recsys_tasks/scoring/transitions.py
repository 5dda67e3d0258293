"""An item-transition prior: which item followed which in the training sequences, blended
into a sequence model's scores (a lead in shared/MODEL_NOTES.md, kept only where validation says so).

P1[a, b] is the share of a's successors that were b; P2 the same one item further on. A user
whose last item is `a` gets, for every item j,

    score_j = log((1 - weight) * softmax(model)_j + weight * ((1 - two_hop) * P1[a, j] + two_hop * P2[a, j]))

so weight 0 is the model alone and an item never seen after `a` keeps the model's order.
`choose_blend` picks (weight, two_hop) from a small grid by validation NDCG@10, from one
scoring pass of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse

from recsys_tasks.data.prepare import Sequences, history_positions
from recsys_tasks.metrics import SELECTION_METRIC, ranking_metrics
from recsys_tasks.scoring.evaluation import Scorer, exclude_seen

WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
TWO_HOPS = (0.0, 0.3)


@dataclass(frozen=True)
class TransitionPrior:
    one_hop: sparse.csr_matrix  # (n + 1, n + 1) row-normalised successor shares
    two_hop: sparse.csr_matrix

    def rows(self, last: np.ndarray, two_hop: float) -> sparse.csr_matrix:
        """(B, n + 1) sparse successor probabilities of each user's last item."""
        mixed = self.one_hop[last] * (1.0 - two_hop)
        if two_hop:
            mixed = mixed + self.two_hop[last] * two_hop
        return mixed.tocsr()


def _normalised(rows: np.ndarray, cols: np.ndarray, size: int) -> sparse.csr_matrix:
    counts = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(size, size))
    totals = np.asarray(counts.sum(axis=1)).ravel()
    totals[totals == 0] = 1.0
    return sparse.diags(1.0 / totals).astype(np.float32) @ counts


def transition_prior(seqs: Sequences, history_end: np.ndarray) -> TransitionPrior:
    """Successor shares from each user's items before `history_end[u]` (the training part;
    an end past the user's last event counts as that event)."""
    size = seqs.n_items + 1
    history_end = np.minimum(history_end, seqs.offsets[1:])
    hops = []
    for gap in (1, 2):
        # every position p of a user's training part whose item p + gap is in it too
        _, firsts = history_positions(seqs.offsets[:-1], np.maximum(history_end - gap, seqs.offsets[:-1]))
        hops.append(_normalised(seqs.items[firsts], seqs.items[firsts + gap], size))
    return TransitionPrior(*hops)


def blend(scores: torch.Tensor, prior_rows: sparse.csr_matrix, weight: float) -> torch.Tensor:
    """The blended log-probabilities (see the module docstring), in place; returns `scores`.

    Without a dense copy: log((1 - w) p) is the logits shifted by a per-row constant, and only
    the prior's few non-zero entries per row need the log-sum with log(w P)."""
    if not weight:
        return scores
    scores[:, 0] = float("-inf")
    scores -= torch.logsumexp(scores, dim=1, keepdim=True) - float(np.log1p(-weight))
    coo = prior_rows.tocoo()
    rows, cols = torch.as_tensor(coo.row, dtype=torch.long), torch.as_tensor(coo.col, dtype=torch.long)
    prior = torch.log(torch.as_tensor(coo.data, dtype=scores.dtype) * weight)
    scores[rows, cols] = torch.logaddexp(scores[rows, cols], prior)
    return scores


def blended_scorer(scorer: Scorer, prior: TransitionPrior, items: np.ndarray, weight: float, two_hop: float) -> Scorer:
    """`scorer` with the prior blended in, for a user whose history ends at `ends` (exclusive)."""
    if not weight:
        return scorer

    def score(users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        base = scorer(users, starts, ends)
        last = np.where(ends > starts, items[np.maximum(ends - 1, 0)], 0)
        return blend(base, prior.rows(last, two_hop), weight)

    return score


def choose_blend(
    scorer: Scorer, prior: TransitionPrior, seqs: Sequences, users: np.ndarray, history_end: np.ndarray,
    batch_size: int = 1024, exclude_history: bool = True,
) -> tuple[tuple[float, float], dict[str, float]]:
    """The (weight, two_hop) of the grid with the best NDCG@10 on the targets at `history_end`
    (validation), and every grid point's figure; the model is scored once per batch."""
    grid = [(0.0, 0.0)] + [(w, h) for w in WEIGHTS if w for h in TWO_HOPS]
    ranks = {point: np.empty(len(users), dtype=np.int64) for point in grid}
    for lo in range(0, len(users), batch_size):
        batch = users[lo : lo + batch_size]
        starts, ends = seqs.offsets[batch], history_end[batch]
        base = scorer(batch, starts, ends).clone()
        last = np.where(ends > starts, seqs.items[np.maximum(ends - 1, 0)], 0)
        rows = {h: prior.rows(last, h) for h in TWO_HOPS}
        target = torch.as_tensor(seqs.items[ends])[:, None]
        for weight, two_hop in grid:
            scores = blend(base.clone(), rows[two_hop], weight)
            if exclude_history:
                exclude_seen(scores, seqs.items, starts, ends)
            ranks[(weight, two_hop)][lo : lo + len(batch)] = ((scores >= scores.gather(1, target)).sum(1) - 1).numpy()
    table = {f"{w}/{h}": round(ranking_metrics(r)[SELECTION_METRIC], 5) for (w, h), r in ranks.items()}
    best = max(grid, key=lambda p: (table[f"{p[0]}/{p[1]}"], -p[0]))
    return best, table


def with_prior(scorer: Scorer, seqs: Sequences, blend_of: dict | None, history_end: np.ndarray | None = None) -> Scorer:
    """`scorer` with a model's chosen blend (its checkpoint's "transition_prior"), the prior
    built from each user's events before `history_end` (default: all of them)."""
    weight, two_hop = (blend_of or {}).get("weight", 0.0), (blend_of or {}).get("two_hop", 0.0)
    if not weight:
        return scorer
    prior = transition_prior(seqs, seqs.offsets[1:] if history_end is None else history_end)
    return blended_scorer(scorer, prior, seqs.items, weight, two_hop)
