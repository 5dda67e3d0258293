"""Full-ranking evaluation: every item is scored, items already in the history are excluded.

One ranking routine serves the model and the baselines: each is a scorer that maps a batch of
users (with their history windows) to scores over the whole catalogue.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from recsys_tasks.metrics import ranking_metrics
from recsys_tasks.model import SequenceEncoder
from recsys_tasks.prepare import Sequences, history_positions, left_padded_windows

# (users, history starts, history ends) -> scores (B, n_items + 1) as a float tensor
Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray], torch.Tensor]


def model_scorer(model: SequenceEncoder, seqs: Sequences, device: torch.device) -> Scorer:
    def score(users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        windows = left_padded_windows(seqs.items, starts, ends, model.config.max_len)
        with torch.no_grad():
            hidden = model.last_hidden(torch.as_tensor(windows, device=device))  # (B, D)
            return model.item_logits(hidden).float().cpu()

    return score


def popularity_scorer(popularity: np.ndarray) -> Scorer:
    scores = torch.as_tensor(popularity, dtype=torch.float32)
    scores[0] = float("-inf")

    def score(users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        return scores.expand(len(users), -1).clone()

    return score


def exclude_seen(scores: torch.Tensor, items: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
    """Set the score of every item in each user's history range to -inf, in place."""
    rows, positions = history_positions(starts, ends)
    cols = items[positions]
    scores[torch.as_tensor(rows), torch.as_tensor(cols)] = float("-inf")


def target_ranks(
    scorer: Scorer, seqs: Sequences, users: np.ndarray, history_end: np.ndarray, batch_size: int = 1024
) -> np.ndarray:
    """0-based rank of the item at `history_end[u]` given the history before it, per user.

    Ties count against the target (an item scored equal to it ranks ahead), so a constant
    scorer cannot look good by luck.
    """
    ranks = np.empty(len(users), dtype=np.int64)
    for lo in range(0, len(users), batch_size):
        batch = users[lo : lo + batch_size]
        starts, ends = seqs.offsets[batch], history_end[batch]
        scores = scorer(batch, starts, ends)
        exclude_seen(scores, seqs.items, starts, ends)
        target = torch.as_tensor(seqs.items[ends])
        target_score = scores.gather(1, target[:, None])
        ranks[lo : lo + len(batch)] = ((scores >= target_score).sum(1) - 1).numpy()
    return ranks


def evaluate(scorer: Scorer, seqs: Sequences, users: np.ndarray, history_end: np.ndarray) -> dict[str, float]:
    return ranking_metrics(target_ranks(scorer, seqs, users, history_end))
