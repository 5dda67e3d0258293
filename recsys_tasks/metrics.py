"""Ranking metrics as small pure functions over the rank of each user's held-out item.

`ranks` are 0-based positions of the target in the user's full ranking (0 = first place).
Every metric averages over users; with one relevant item per user, HR@K equals Recall@K.
"""

from __future__ import annotations

import numpy as np


def hit_rate_at_k(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks)
    return float(np.mean(ranks < k)) if ranks.size else 0.0


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """One relevant item: DCG = 1 / log2(rank + 2) inside the top K, and the ideal DCG is 1."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not ranks.size:
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(np.mean(gains))


def mrr(ranks: np.ndarray) -> float:
    ranks = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(1.0 / (ranks + 1.0))) if ranks.size else 0.0


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = hit_rate_at_k(ranks, k)
        out[f"NDCG@{k}"] = ndcg_at_k(ranks, k)
    out["MRR"] = mrr(ranks)
    return out
