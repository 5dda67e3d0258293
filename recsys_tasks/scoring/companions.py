"""What a run publishes beside the users' lists: the non-personal fallback list (what is
trending, for users without a row of their own), every item's similar items (for item pages),
and the catalogue snapshot readers join for titles. The first two obey the run's catalogue and
business rules: blocked items appear in neither."""

from __future__ import annotations

import numpy as np
import pandas as pd

FALLBACK_COLUMNS = ("rank", "item_id", "score")
SIMILAR_COLUMNS = ("item_id", "rank", "similar_item_id", "score")
ITEM_COLUMNS = ("item_id", "title", "attributes", "available")


def catalogue_snapshot(item_ids: list[str], items: pd.DataFrame | None, attributes: pd.DataFrame | None,
                       blocked: np.ndarray | None = None) -> pd.DataFrame:
    """Each vocabulary item's title (the catalogue's `title`, else `name`; NULL without one), its
    attributes ("column=value" joined by "|") and whether the run may recommend it (`blocked`
    over tokens: unavailable or excluded), as the run saw them."""
    frame = pd.DataFrame({"item_id": pd.Series(item_ids, dtype=object)})
    if items is not None and "title" in items:
        titles = items.drop_duplicates("item_id").set_index("item_id")["title"]
        frame["title"] = frame["item_id"].map(titles).where(lambda t: t.notna() & (t != ""), None)
    else:
        frame["title"] = None
    if attributes is not None and len(attributes):
        joined = attributes.astype({"attribute": str}).groupby("item_id")["attribute"].agg(lambda v: "|".join(sorted(set(v))))
        frame["attributes"] = frame["item_id"].map(joined).where(lambda a: a.notna(), None)
    else:
        frame["attributes"] = None
    allowed = np.ones(len(item_ids), dtype=bool) if blocked is None else ~np.asarray(blocked, dtype=bool)[1 : len(item_ids) + 1]
    frame["available"] = allowed
    return frame[list(ITEM_COLUMNS)]


def trending(frame: pd.DataFrame, item_ids: list[str], days: int, k: int, blocked: np.ndarray | None = None) -> pd.DataFrame:
    """The `k` items with most events in the last `days` days of the log (`frame`: item_id, ts),
    `score` = that count; ties, and places the window cannot fill, go to the most events overall.
    Only vocabulary items (`item_ids`, token - 1 -> id) that are not `blocked` (over tokens) count."""
    allowed = np.ones(len(item_ids), dtype=bool) if blocked is None else ~np.asarray(blocked, dtype=bool)[1 : len(item_ids) + 1]
    candidates = pd.Index(np.asarray(item_ids, dtype=object)[allowed])
    events = frame[frame["item_id"].astype(str).isin(candidates)]
    recent = events[events["ts"] >= events["ts"].max() - pd.Timedelta(days=days)] if len(events) else events
    counts = pd.DataFrame({
        "score": recent["item_id"].astype(str).value_counts().reindex(candidates, fill_value=0),
        "overall": events["item_id"].astype(str).value_counts().reindex(candidates, fill_value=0),
    })
    best = counts.sort_values(["score", "overall"], ascending=False, kind="stable").head(k)
    return pd.DataFrame({"rank": np.arange(1, len(best) + 1), "item_id": best.index.astype(str),
                         "score": best["score"].astype(float).to_numpy()})


def similar(
    vectors: np.ndarray, item_ids: list[str], k: int, blocked: np.ndarray | None = None, chunk: int = 2048
) -> pd.DataFrame:
    """Each item's `k` nearest items by cosine of `vectors` (row = token - 1), itself excluded.
    Blocked items (over tokens) and items without a vector (all zeros) neither get nor are neighbours."""
    import torch  # here, so that readers of the results database need no torch

    vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    norms = vectors.norm(dim=1)
    usable = norms > 0
    if blocked is not None:
        usable &= ~torch.as_tensor(np.asarray(blocked, dtype=bool)[1 : len(item_ids) + 1])
    rows = torch.nonzero(usable).flatten()
    k = min(k, len(rows) - 1)
    if k <= 0:
        return pd.DataFrame(columns=list(SIMILAR_COLUMNS))
    unit = vectors[rows] / norms[rows, None]
    ids = np.asarray(item_ids, dtype=object)[rows.numpy()]
    parts = []
    for lo in range(0, len(rows), chunk):
        cosine = unit[lo : lo + chunk] @ unit.T
        cosine[torch.arange(len(cosine)), torch.arange(lo, lo + len(cosine))] = float("-inf")  # not itself
        score, index = cosine.topk(k, dim=1)
        parts.append(pd.DataFrame({
            "item_id": np.repeat(ids[lo : lo + len(cosine)], k),
            "rank": np.tile(np.arange(1, k + 1), len(cosine)),
            "similar_item_id": ids[index.flatten().numpy()],
            "score": score.flatten().numpy().astype(float),
        }))
    return pd.concat(parts, ignore_index=True)
