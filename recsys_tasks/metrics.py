"""Ranking metrics as small pure functions over the rank of each user's held-out item, and the
names of the figures the project reports.

`ranks` are 0-based positions of the target in the user's full ranking (0 = first place).
Every metric averages over users; with one relevant item per user, HR@K equals Recall@K.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# The one name of the quality figure the project selects by: the best fine-tuning epoch, the
# benchmark's headline, the gate's comparison, reports and the console all read it (through
# the `selection_metric` setting, whose default this is).
SELECTION_METRIC = "NDCG@10"
HEADLINE_METRICS = ("HR@10", "NDCG@10")  # what one-line summaries show
REPORTED_METRICS = ("HR@10", "NDCG@10", "MRR", "coverage@10")  # the evaluation report's table and plot


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


def per_user(metric: str, ranks: np.ndarray) -> np.ndarray:
    """Each user's share of a ranking metric (`HR@K`, `Recall@K`, `NDCG@K`, `MRR`): the metric
    is their mean, so their spread gives its sampling error."""
    ranks = np.asarray(ranks, dtype=np.float64)
    name, _, k = metric.partition("@")
    if name in ("HR", "Recall"):
        return (ranks < int(k)).astype(np.float64)
    if name == "NDCG":
        return np.where(ranks < int(k), 1.0 / np.log2(ranks + 2.0), 0.0)
    if name == "MRR":
        return 1.0 / (ranks + 1.0)
    raise ValueError(f"no per-user form of {metric!r}")


def mean_covariance(values: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """The covariance matrix of the means of per-user values measured on the same users
    (sample covariance / n): the variance of any difference of these means follows from it."""
    names = list(values)
    n = len(next(iter(values.values())))
    matrix = np.cov(np.stack([values[name] for name in names])) / n if n > 1 else np.zeros((len(names), len(names)))
    matrix = np.atleast_2d(matrix)
    return {a: {b: float(matrix[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}


def difference_interval(covariance: dict[str, dict[str, float]], a: str, b: str, weight: float = 1.0,
                        z: float = 1.96) -> float:
    """Half-width of the z-interval of mean(a) - weight * mean(b), from `mean_covariance`."""
    variance = covariance[a][a] + weight**2 * covariance[b][b] - 2 * weight * covariance[a][b]
    return float(z * np.sqrt(max(variance, 0.0)))


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = hit_rate_at_k(ranks, k)
        out[f"Recall@{k}"] = out[f"HR@{k}"]  # one relevant item per user: the same number, named for both habits
        out[f"NDCG@{k}"] = ndcg_at_k(ranks, k)
    out["MRR"] = mrr(ranks)
    return out


def catalogue_metrics(top_items: np.ndarray, popularity: np.ndarray, k: int) -> dict[str, float]:
    """Coverage@K (share of the catalogue recommended to someone) and the mean popularity
    percentile of recommended items (1.0 = only the most popular item).

    top_items (U, K) item tokens (1..n); popularity (n + 1,) counts per token, token 0 unused.
    """
    n_items = len(popularity) - 1
    if top_items.size == 0 or n_items <= 0:
        return {f"coverage@{k}": 0.0, f"popularity_percentile@{k}": 0.0}
    order = np.argsort(np.argsort(popularity[1:], kind="stable"), kind="stable")  # rank 0 = least popular
    percentile = np.concatenate([[0.0], order / max(n_items - 1, 1)])
    return {
        f"coverage@{k}": float(len(np.unique(top_items)) / n_items),
        f"popularity_percentile@{k}": float(percentile[top_items].mean()),
    }


def list_overlap(candidate: pd.DataFrame, published: pd.DataFrame, k: int, n_items: int) -> dict[str, float]:
    """How much a candidate's top-K would change what users are shown now.

    Both frames hold `user_id, item_id` rows (K per user at most); only users in both count.
    overlap@K: mean share of a user's published items the candidate also recommends;
    churn@K = 1 - overlap@K; coverage: distinct items shown across those users / catalogue.
    """
    users = set(candidate["user_id"]) & set(published["user_id"])
    if not users:
        return {"users": 0}
    cand = candidate[candidate["user_id"].isin(users)]
    pub = published[published["user_id"].isin(users)]
    shown = pub.groupby("user_id").size()
    shared = cand.merge(pub, on=["user_id", "item_id"]).groupby("user_id").size().reindex(shown.index, fill_value=0)
    overlap = float((shared / shown).mean())
    coverage_candidate = cand["item_id"].nunique() / max(n_items, 1)
    coverage_published = pub["item_id"].nunique() / max(n_items, 1)
    return {
        "users": len(users), f"overlap@{k}": overlap, f"churn@{k}": 1.0 - overlap,
        "coverage_candidate": coverage_candidate, "coverage_published": coverage_published,
        "coverage_change": coverage_candidate - coverage_published,
    }
