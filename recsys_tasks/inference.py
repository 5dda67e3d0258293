"""Top-K recommendation for a range of users: score the whole catalogue, drop seen items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from recsys_tasks.evaluation import exclude_seen, model_scorer
from recsys_tasks.model import SequenceEncoder
from recsys_tasks.prepare import Sequences


def top_k_for_users(
    model: SequenceEncoder, seqs: Sequences, users: np.ndarray, k: int, device: torch.device, batch_size: int = 2048
) -> pd.DataFrame:
    """Frame `user_id, rank, item_id, score` (source ids), K rows per user at most.

    A user who has seen nearly the whole catalogue gets fewer than K rows: an item already
    seen is never recommended.
    """
    score = model_scorer(model, seqs, device)
    item_ids = np.asarray(seqs.item_ids, dtype=object)
    user_ids = np.asarray(seqs.user_ids, dtype=object)
    parts = []
    for lo in range(0, len(users), batch_size):
        batch = users[lo : lo + batch_size]
        starts, ends = seqs.offsets[batch], seqs.offsets[batch + 1]
        scores = score(batch, starts, ends)  # (B, n_items + 1)
        exclude_seen(scores, seqs.items, starts, ends)
        top_scores, top_tokens = torch.topk(scores, min(k, seqs.n_items), dim=1)  # (B, K)
        valid = torch.isfinite(top_scores).numpy()
        rows, ranks = np.nonzero(valid)
        parts.append(
            pd.DataFrame(
                {
                    "user_id": user_ids[batch[rows]],
                    "rank": ranks + 1,
                    "item_id": item_ids[top_tokens.numpy()[rows, ranks] - 1],
                    "score": top_scores.numpy()[rows, ranks].astype(np.float64),
                }
            )
        )
    if not parts:
        return pd.DataFrame({"user_id": [], "rank": [], "item_id": [], "score": []})
    return pd.concat(parts, ignore_index=True)
