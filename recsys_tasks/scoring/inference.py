"""Top-K recommendation for a range of users: score the whole catalogue, drop seen items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from recsys_tasks.data.prepare import Sequences
from recsys_tasks.scoring.evaluation import ScoreBuffer, Scorer, exclude_seen, popularity_scorer
from recsys_tasks.scoring.explain import nearest_history_items, softmax_probabilities

COLUMNS = ("user_id", "rank", "item_id", "score", "strategy", "probability", "because_item_id", "because_score", "reason")


def embedding_scorer(user_vectors: torch.Tensor, item_vectors: torch.Tensor) -> Scorer:
    """Scores from precomputed embeddings: users (U, D) against items (n_items + 1, D), row 0 padding."""
    buffer = ScoreBuffer()

    def score(users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        out = buffer.get(len(users), len(item_vectors), item_vectors.device)
        scores = torch.matmul(user_vectors[torch.as_tensor(users)], item_vectors.T, out=out)  # (B, n_items + 1)
        scores[:, 0] = float("-inf")
        return scores

    return score


def top_k_for_users(
    score: Scorer, seqs: Sequences, users: np.ndarray, k: int, min_history: int = 1, batch_size: int = 1024,
    blocked: np.ndarray | None = None, caps: list[tuple[np.ndarray, int]] = (), strategy: str = "model",
    exclude_history: bool = True, units: torch.Tensor | None = None, probability: str | None = "softmax",
) -> pd.DataFrame:
    """Frame `COLUMNS` (source ids), K rows per user at most.

    `score` is the model's scorer (`evaluation.model_scorer`) or any other. Users with fewer
    than `min_history` events get the most popular items instead, marked `strategy =
    'popularity'`; the scorer's rows are marked `strategy` ("model", or a baseline's name). A
    user who has seen nearly the whole catalogue gets fewer than K rows: an item already seen
    is never recommended, nor one `blocked` ((n_items + 1,) bools over tokens: unavailable or
    excluded items), whatever scored it. `caps`: (group per token, N) pairs; a
    list holds at most N items of one group (diversity, e.g. N per brand), the best-scored
    ones, the next best items filling the freed places. Memory is bounded by batch_size x n_items.

    Each row says why (`scoring.explain`): `reason` "popular" for the popularity fallback and a
    popularity scorer; with `units` (`explain.unit_rows` of the item vectors) "history", or
    "new_item" for an item without events, and `because_item_id`/`because_score`, the history
    item nearest to it. `probability`: "softmax" (the scorer's scores are logits or log
    probabilities over the catalogue), "share" (they are event counts) or None.
    """
    never = torch.as_tensor(blocked) if blocked is not None else None
    counts = np.bincount(seqs.items, minlength=seqs.n_items + 1).astype(np.float64)
    popularity = popularity_scorer(counts)
    total = max(counts.sum(), 1.0)
    item_ids = np.asarray(seqs.item_ids, dtype=object)
    user_ids = np.asarray(seqs.user_ids, dtype=object)
    parts = []
    for lo in range(0, len(users), batch_size):
        batch = users[lo : lo + batch_size]
        starts, ends = seqs.offsets[batch], seqs.offsets[batch + 1]
        scores = score(batch, starts, ends)  # (B, n_items + 1)
        normaliser = torch.logsumexp(scores, dim=1) if probability == "softmax" else None
        fallback = (ends - starts) < min_history
        if fallback.any():
            scores[torch.as_tensor(fallback)] = popularity(batch[fallback], starts[fallback], ends[fallback])
        if exclude_history:  # `repeats=allow`: items of the history may come again
            exclude_seen(scores, seqs.items, starts, ends)
        if never is not None:
            scores[:, never] = float("-inf")
        # with caps, a deeper candidate list, so that capped-out items can be replaced
        depth = min(k if not caps else 4 * k + 20, seqs.n_items)
        top_scores, top_tokens = torch.topk(scores, depth, dim=1)  # (B, depth)
        for groups, cap in caps:
            top_scores = capped(top_scores, groups[top_tokens.numpy()], cap)
        if depth > k:
            top_scores, picked = torch.topk(top_scores, min(k, seqs.n_items), dim=1)  # stays in score order
            top_tokens = torch.gather(top_tokens, 1, picked)
        valid = torch.isfinite(top_scores).numpy()
        rows, ranks = np.nonzero(valid)
        tokens = top_tokens.numpy()[rows, ranks]
        raw = top_scores.numpy()[rows, ranks].astype(np.float64)
        popular = fallback[rows] | (strategy == "popularity")
        if probability == "softmax":
            chance = softmax_probabilities(top_scores, normaliser).astype(np.float64)[rows, ranks]
        else:
            chance = raw / total if probability == "share" else np.full(len(rows), np.nan)
        chance = np.where(fallback[rows], raw / total, chance)  # the fallback's scores are event counts
        reason = np.where(popular, "popular", strategy).astype(object)
        because, because_score = np.zeros(len(rows), dtype=np.int64), np.full(len(rows), np.nan)
        if units is not None:
            because, because_score = nearest_history_items(units, seqs, batch[rows], tokens)
            explained = (because > 0) & ~popular
            reason = np.where(explained, np.where(counts[tokens] == 0, "new_item", "history"), reason)
            because, because_score = np.where(explained, because, 0), np.where(explained, because_score, np.nan)
        parts.append(
            pd.DataFrame(
                {
                    "user_id": user_ids[batch[rows]],
                    "rank": ranks + 1,
                    "item_id": item_ids[tokens - 1],
                    "score": raw,
                    "strategy": np.where(fallback[rows], "popularity", strategy),
                    "probability": chance,
                    "because_item_id": np.where(because > 0, item_ids[np.maximum(because, 1) - 1], None),
                    "because_score": because_score,
                    "reason": reason,
                }
            )
        )
    if not parts:
        return pd.DataFrame({name: [] for name in COLUMNS})
    return pd.concat(parts, ignore_index=True)


def capped(scores: torch.Tensor, groups: np.ndarray, cap: int) -> torch.Tensor:
    """`scores` (B, C) of candidates in descending order, with -inf wherever a candidate would
    be the cap + 1-th (or later) of its group in its row; group -1 is never capped."""
    rows, cols = groups.shape
    row = np.repeat(np.arange(rows), cols)
    flat = groups.ravel()
    order = np.lexsort((np.tile(np.arange(cols), rows), flat, row))  # by row, then group, then rank
    g, r = flat[order], row[order]
    starts = np.r_[True, (g[1:] != g[:-1]) | (r[1:] != r[:-1])]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
    over = np.empty(len(order), dtype=bool)
    over[order] = ((np.arange(len(order)) - run_start) >= cap) & (g >= 0)
    out = scores.clone()
    out[torch.as_tensor(over.reshape(rows, cols))] = float("-inf")
    return out
