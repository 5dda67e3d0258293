"""Why an item is in a user's list, and what its score means.

A reason: the item of the user's own history nearest to the recommended item in the model's
item space (cosine of item vectors over the last `window` events), named in `because_item_id`
with that cosine as `because_score`. `benchmarks/bench_explain.py` checks the choice against a
leave-one-out of the history: removing the named item should lower the recommendation's rank
more than removing a random history item does.

A meaning for the score: a model row's `probability` is the model's probability that the item
is the user's next one (a softmax over the whole catalogue, the transition prior blended in
where validation chose one); a popularity row's is the item's share of all events.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys_tasks.data.prepare import Sequences

# the `reason` of each kind of row; `because_item_id` names the history item where there is one
REASONS = {
    "history": "like an item of the user's history (because_item_id)",
    "new_item": "a new item (no events yet) like an item of the user's history, by its content",
    "popular": "among the most popular items (too little history for the model)",
    "control": "the holdout's control list",
    "trending": "the fallback list: most events in the last trending_days (users without a list)",
}
WINDOW = 50  # history items considered as reasons: the most recent ones, as the model reads them


def unit_rows(vectors: np.ndarray) -> torch.Tensor:
    """(n_items + 1, d) unit item vectors by token (row 0, padding, all zeros)."""
    table = torch.zeros((len(vectors) + 1, vectors.shape[1]), dtype=torch.float32)
    table[1:] = torch.nn.functional.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=1)
    return table


def nearest_history_items(
    units: torch.Tensor, seqs: Sequences, users: np.ndarray, tokens: np.ndarray, window: int = WINDOW,
    history_end: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each (user, recommended token) row: the token of the user's history (its last
    `window` events before `history_end`, default all of them) nearest to the recommended item,
    and that cosine. Token 0 and NaN for a user without history."""
    ends = seqs.offsets[users + 1] if history_end is None else history_end[users]
    starts = np.maximum(seqs.offsets[users], ends - window)
    width = int((ends - starts).max()) if len(users) else 0
    if width == 0:
        return np.zeros(len(users), dtype=np.int64), np.full(len(users), np.nan)
    # (R, width) history tokens, left-padded with 0
    column = np.arange(width)[None, :] - (width - (ends - starts))[:, None]
    positions = np.clip(starts[:, None] + column, 0, max(len(seqs.items) - 1, 0))
    history = np.where(column >= 0, seqs.items[positions], 0)
    history_t = torch.as_tensor(history)
    cosines = torch.einsum("rd,rld->rl", units[torch.as_tensor(tokens)], units[history_t])
    cosines[history_t == 0] = float("-inf")
    best, at = cosines.max(dim=1)
    because = history[np.arange(len(users)), at.numpy()]
    scores = best.numpy().astype(np.float64)
    empty = ends <= starts
    because[empty], scores[empty] = 0, np.nan
    return because, scores


def softmax_probabilities(top_scores: torch.Tensor, log_normaliser: torch.Tensor) -> np.ndarray:
    """exp(score - logsumexp over the catalogue): each listed item's softmax probability."""
    return torch.exp(top_scores - log_normaliser[:, None]).numpy().astype(np.float64)
