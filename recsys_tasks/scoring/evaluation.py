"""Full-ranking evaluation: every item is scored, items already in the history are excluded.

One ranking routine serves the model and the baselines: each is a scorer that maps a batch of
users (with their history windows) to scores over the whole catalogue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from scipy import sparse

from recsys_tasks.data.prepare import Sequences, history_positions, left_padded_windows, token_map
from recsys_tasks.metrics import catalogue_metrics, ranking_metrics

# (users, history starts, history ends) -> scores (B, n_items + 1) as a float tensor
Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray], torch.Tensor]


class Encoder(Protocol):
    """What scoring needs of a sequence model (`learning.model.SequenceEncoder` is one)."""

    n_items: int
    config: Any  # its max_len bounds the history it reads

    def last_hidden(self, windows: torch.Tensor) -> torch.Tensor: ...  # (B, L) -> (B, D)

    def item_logits(self, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor: ...  # (B, n + 1)


class ScoreBuffer:
    """One (batch, n_items + 1) score matrix, reused from batch to batch.

    A fresh matrix per batch is a fresh allocation the kernel must fault in page by page
    (hundreds of MB per batch at 100k items): reusing one made scoring about 30% faster here.
    A scorer that uses it returns a view that its next call overwrites; callers consume each
    batch before asking for the next (all of them do).
    """

    def __init__(self) -> None:
        self.held: torch.Tensor | None = None

    def get(self, rows: int, cols: int, device: torch.device) -> torch.Tensor:
        held = self.held
        if held is None or held.shape[0] < rows or held.shape[1] != cols or held.device != device:
            self.held = held = torch.empty(rows, cols, device=device)
        return held[:rows]


def model_scorer(model: Encoder, seqs: Sequences, device: torch.device) -> Scorer:
    buffer = ScoreBuffer()

    def score(users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        # cut to the batch's longest history: padding changes no state, and short batches are cheap
        width = int(np.clip((ends - starts).max(initial=1), 1, model.config.max_len))
        windows = left_padded_windows(seqs.items, starts, ends, width)
        with torch.no_grad():
            hidden = model.last_hidden(torch.as_tensor(windows, device=device)).float()  # (B, D)
            return model.item_logits(hidden, out=buffer.get(len(users), model.n_items + 1, device)).cpu()

    return score


def popularity_scorer(popularity: np.ndarray) -> Scorer:
    scores = torch.as_tensor(popularity, dtype=torch.float32)
    scores[0] = float("-inf")

    def score(users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        return scores.expand(len(users), -1).clone()

    score.constant = scores  # one ranking for everyone: target_ranks ranks it once, not per user
    return score


def _constant_ranks(scores: torch.Tensor, seqs: Sequences, users: np.ndarray, history_end: np.ndarray, top_k: int,
                    exclude_history: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """target_ranks for a scorer that gives every user the same scores: the catalogue is sorted
    once; per user only the history is looked at (the items it removes from above the target,
    and from the top-K). Equal to the per-user path, ties and repeated targets included."""
    values = scores.double().numpy()
    at_least = len(values) - np.searchsorted(np.sort(values), values, side="left")  # tokens scoring >= each token
    starts, ends = seqs.offsets[users], history_end[users]
    target = seqs.items[ends]
    ranks = at_least[target] - 1
    rows, positions = history_positions(starts, ends)
    cols = seqs.items[positions]
    tops = np.zeros((len(users), top_k), dtype=np.int64)
    if not exclude_history:
        if top_k:
            tops[:] = np.argsort(-values, kind="stable")[:top_k]
        return ranks, tops
    pairs = np.unique(rows.astype(np.int64) * (len(values) + 1) + cols)  # each user's distinct history items
    rows, cols = pairs // (len(values) + 1), pairs % (len(values) + 1)
    repeated = np.zeros(len(users), dtype=bool)
    repeated[rows[cols == target[rows]]] = True
    above = values[cols] >= values[target[rows]]
    ranks = ranks - np.bincount(rows[above], minlength=len(users))
    ranks[repeated] = len(values) - 1  # an excluded target scores -inf: behind everything, a miss
    if top_k:
        order = np.argsort(-values, kind="stable")
        seen = np.bincount(rows, minlength=len(users))
        head = order[: min(len(order), top_k + int(seen.max(initial=0)))]
        slot = np.full(len(values), -1)
        slot[head] = np.arange(len(head))
        blocked = np.zeros((len(users), len(head)), dtype=bool)
        inside = slot[cols] >= 0
        blocked[rows[inside], slot[cols[inside]]] = True
        keep = ~blocked & np.isfinite(values[head])[None, :]
        chosen = keep & (np.cumsum(keep, axis=1) <= top_k)
        if (chosen.sum(axis=1) < top_k).any():
            return None  # a catalogue smaller than a history plus K: the per-user path handles it
        tops[:] = np.broadcast_to(head, blocked.shape)[chosen].reshape(len(users), top_k)
    return ranks, tops


def exclude_seen(scores: torch.Tensor, items: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
    """Set the score of every item in each user's history range to -inf, in place."""
    rows, positions = history_positions(starts, ends)
    cols = items[positions]
    scores[torch.as_tensor(rows), torch.as_tensor(cols)] = float("-inf")


def target_ranks(
    scorer: Scorer, seqs: Sequences, users: np.ndarray, history_end: np.ndarray, batch_size: int = 1024,
    top_k: int = 0, exclude_history: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """0-based rank of the item at `history_end[u]` given the history before it, per user,
    and (when `top_k`) each user's top-K tokens (U, K), for coverage and popularity bias.

    Ties count against the target (an item scored equal to it ranks ahead), so a constant
    scorer cannot look good by luck. History items are excluded from the ranking (a repeated
    target is then a miss, as in the published protocol) unless `exclude_history` is False
    (`repeats=allow`: seen items may be recommended, so they are ranked too). Scores exist one
    batch at a time: memory is bounded by batch_size x n_items, whatever the number of users.
    """
    if getattr(scorer, "constant", None) is not None:
        ranked = _constant_ranks(scorer.constant, seqs, users, history_end, top_k, exclude_history)
        if ranked is not None:
            return ranked
    ranks = np.empty(len(users), dtype=np.int64)
    tops = np.zeros((len(users), top_k), dtype=np.int64)
    # users of similar history length batched together, so a sequence model's batch is as long
    # as its histories rather than max_len; results go back to each user's place
    order = np.argsort(history_end[users] - seqs.offsets[users], kind="stable")
    for lo in range(0, len(users), batch_size):
        at = order[lo : lo + batch_size]
        batch = users[at]
        starts, ends = seqs.offsets[batch], history_end[batch]
        scores = scorer(batch, starts, ends)
        if exclude_history:
            exclude_seen(scores, seqs.items, starts, ends)
        target = torch.as_tensor(seqs.items[ends])
        target_score = scores.gather(1, target[:, None])
        ranks[at] = ((scores >= target_score).sum(1) - 1).numpy()
        if top_k:
            tops[at] = torch.topk(scores, min(top_k, scores.shape[1] - 1), dim=1).indices.numpy()
    return ranks, tops


def ranked_metrics(
    scorer: Scorer, seqs: Sequences, users: np.ndarray, history_end: np.ndarray,
    popularity: np.ndarray | None = None, k: int = 10, exclude_history: bool = True,
) -> tuple[dict[str, float], np.ndarray]:
    """Ranking metrics and each user's target rank; with `popularity` (training counts per
    token) also catalogue coverage@K and the mean popularity percentile of the recommended items."""
    top_k = k if popularity is not None else 0
    ranks, tops = target_ranks(scorer, seqs, users, history_end, top_k=top_k, exclude_history=exclude_history)
    metrics = ranking_metrics(ranks)
    if popularity is not None:
        metrics.update(catalogue_metrics(tops, popularity, k))
    return metrics, ranks


def full_ranking_metrics(
    scorer: Scorer, seqs: Sequences, users: np.ndarray, history_end: np.ndarray,
    popularity: np.ndarray | None = None, k: int = 10, exclude_history: bool = True,
) -> dict[str, float]:
    return ranked_metrics(scorer, seqs, users, history_end, popularity, k, exclude_history)[0]


def history_matrix(seqs: Sequences, starts: np.ndarray, ends: np.ndarray) -> sparse.csr_matrix:
    """(len(starts), n_items + 1) sparse 0/1: the items of each history range (repeats count once)."""
    rows, positions = history_positions(starts, ends)
    ones = np.ones(len(rows), dtype=np.float32)
    matrix = sparse.csr_matrix((ones, (rows, seqs.items[positions])), shape=(len(starts), seqs.n_items + 1))
    matrix.data[:] = 1.0  # duplicates were summed
    return matrix


def ease_scorer(seqs: Sequences, train_end: np.ndarray, l2: float = 500.0) -> Scorer:
    """EASE (Steck, 2019): a closed-form item-to-item linear model; an n_items^2 matrix, so
    meant for catalogues of up to a few thousand items."""
    x = history_matrix(seqs, seqs.offsets[:-1], train_end)
    gram = torch.as_tensor((x.T @ x).toarray(), dtype=torch.float64)  # (n, n) co-occurrence counts
    gram += l2 * torch.eye(len(gram), dtype=torch.float64)
    inverse = torch.linalg.inv(gram)
    weights = (-inverse / torch.diagonal(inverse)).float()
    weights.fill_diagonal_(0.0)

    def score(users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        scores = torch.as_tensor(history_matrix(seqs, starts, ends).toarray()) @ weights  # (B, n)
        scores[:, 0] = float("-inf")
        return scores

    return score


def item_knn_scorer(seqs: Sequences, train_end: np.ndarray, neighbours: int = 100, block_cells: int = 2**25) -> Scorer:
    """Item-to-item kNN (cosine over the users who interacted with both items), the baseline
    for catalogues too big for EASE. Each item keeps its `neighbours` most similar items; a
    user's score for an item is the sum of its similarities to the items in the history.
    Memory: n_items x neighbours for the model, about `block_cells` floats while it is built.
    """
    x = history_matrix(seqs, seqs.offsets[:-1], train_end)
    xt = x.T.tocsr()
    n = x.shape[1]
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    keep = min(neighbours, n - 1)
    block = max(1, block_cells // n)
    data, cols = [], []
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        sims = torch.as_tensor((xt[lo:hi] @ x).toarray())  # (b, n) co-occurrence counts
        sims /= torch.as_tensor(norms[lo:hi, None] * norms[None, :])
        sims[torch.arange(hi - lo), torch.arange(lo, hi)] = 0.0  # an item is not its own neighbour
        sims[:, 0] = 0.0
        values, indices = torch.topk(sims, keep, dim=1)
        data.append(values.numpy())
        cols.append(indices.numpy())
    weights = sparse.csr_matrix(
        (np.concatenate(data).ravel(), np.concatenate(cols).ravel(), np.arange(0, n * keep + 1, keep)), shape=(n, n)
    )
    weights.eliminate_zeros()

    def score(users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        scores = torch.as_tensor((history_matrix(seqs, starts, ends) @ weights).toarray())  # (B, n)
        scores[:, 0] = float("-inf")
        return scores

    return score


BASELINES = ("popularity", "ease", "item_knn")  # the non-sequential scorers a candidate must beat


def baseline_scorer(name: str, seqs: Sequences, history_end: np.ndarray) -> Scorer:
    """A baseline fitted on every user's items before `history_end`: the evaluation's
    (train_end) or, to publish a baseline's lists, all of them (`seqs.offsets[1:]`)."""
    if name == "popularity":
        _, positions = history_positions(seqs.offsets[:-1], history_end)
        return popularity_scorer(np.bincount(seqs.items[positions], minlength=seqs.n_items + 1).astype(np.float64))
    if name == "ease":
        return ease_scorer(seqs, history_end)
    if name == "item_knn":
        return item_knn_scorer(seqs, history_end)
    raise ValueError(f"no baseline {name!r}; one of {', '.join(BASELINES)}")


def cooccurrence_vectors(seqs: Sequences, dims: int = 64) -> np.ndarray:
    """(n_items, <= dims) item vectors from which users had which items (a truncated SVD of
    the item x user matrix): items bought by the same users point the same way. What a
    baseline night uses for similar items, having no trained item vectors."""
    from sklearn.decomposition import TruncatedSVD

    x = history_matrix(seqs, seqs.offsets[:-1], seqs.offsets[1:]).T.tocsr()[1:]  # (n_items, users)
    if min(x.shape) < 2:
        return np.zeros((x.shape[0], 1), dtype=np.float32)
    return TruncatedSVD(min(dims, min(x.shape) - 1), random_state=0).fit_transform(x).astype(np.float32)


def remapped_scorer(model: Encoder, model_item_ids: list[str], seqs: Sequences, device: torch.device) -> Scorer:
    """Score today's catalogue with a model trained on another vocabulary (production's).

    Items are matched by source id; items the model never saw score -inf for it.
    """
    to_model = token_map(seqs.item_ids, model_item_ids)  # current token -> model token (0: unknown)
    known = np.flatnonzero(to_model)
    known_t, model_t = torch.as_tensor(known), torch.as_tensor(to_model[known])
    buffer = ScoreBuffer()

    def score(users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> torch.Tensor:
        windows = to_model[left_padded_windows(seqs.items, starts, ends, model.config.max_len)]
        with torch.no_grad():
            logits = model.item_logits(model.last_hidden(torch.as_tensor(windows, device=device))).float().cpu()
        out = buffer.get(len(users), seqs.n_items + 1, torch.device("cpu")).fill_(float("-inf"))
        out[:, known_t] = logits[:, model_t]
        return out

    return score
