"""Outcome tracking: how the lists readers were shown did against what users did next.

Each nightly run, before it trains, takes the lists of the run readers see now
(`recommendations_current`) and the events of its own log that came after that run's data
(event time later than the published run's newest event), and counts per user:

- hit: at least one of the user's new items is in their list (hit rate@K over active users);
- NDCG@K: the new items as relevant, normalised by the ideal list of min(new items, K);
- weighted hits: each hit item counts the weight of the strongest event on it (`event_weights`);
- coverage: distinct items across the group's lists over the catalogue the lists came from.

Groups are (model_version, strategy, variant), plus 'all' rows per variant and overall. With a
holdout (`holdout_fraction`), a stable hashed share of users is shown the control list
(`variant = 'control'`), and the uplift of the model's hit rate over control comes with a 95%
interval. Only users who did something since are scored: a list nobody could act on says
nothing about its quality.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

ALL = "all"
_SALT = b"recsys-holdout|"  # fixed: a user stays in the same variant run after run


def holdout_variant(user_ids: np.ndarray | list, fraction: float) -> np.ndarray:
    """'control' for a stable, hashed `fraction` of users, 'model' for the rest.

    The hash of the user id alone decides, so a user keeps their variant from run to run, and
    raising the fraction only moves users from 'model' to 'control', never back."""
    ids = list(user_ids)
    if fraction <= 0 or not ids:
        return np.full(len(ids), "model", dtype=object)
    buckets = np.fromiter(
        (int.from_bytes(hashlib.blake2b(_SALT + str(u).encode(), digest_size=8).digest(), "big") for u in ids),
        dtype=np.uint64, count=len(ids),
    )
    control = buckets < np.uint64(min(fraction, 1.0) * 2**64 - 1)
    return np.where(control, "control", "model").astype(object)


def relative_uplift(
    hits: int, users: int, control_hits: int, control_users: int, z: float = 1.96
) -> tuple[float, float, float] | None:
    """Relative uplift of one hit rate over another, p / p_control - 1, with a `z` interval
    from the log of the ratio (delta method). None when either side has no users or no hits."""
    if min(users, control_users, hits, control_hits) <= 0:
        return None
    p, q = hits / users, control_hits / control_users
    se = math.sqrt((1 - p) / hits + (1 - q) / control_hits)
    ratio = math.log(p / q)
    return p / q - 1, math.exp(ratio - z * se) - 1, math.exp(ratio + z * se) - 1


def per_user(lists: pd.DataFrame, events: pd.DataFrame, weights: Mapping[str, float]) -> pd.DataFrame:
    """One row per listed user with new events: `user_id, hit, ndcg, weighted_hits`.

    `lists`: `user_id, rank, item_id` (one published list per user); `events`: the new
    `user_id, item_id, event_type` rows."""
    if events.empty or lists.empty:
        return pd.DataFrame({"user_id": [], "hit": [], "ndcg": [], "weighted_hits": []})
    kinds = events["event_type"] if "event_type" in events else pd.Series("", index=events.index)
    strength = (
        events.assign(weight=kinds.map(lambda e: weights.get(str(e), 1.0)).astype(float))
        .groupby(["user_id", "item_id"], as_index=False)["weight"].max()
    )
    strength = strength[strength["user_id"].isin(lists["user_id"].unique())]
    relevant = strength.groupby("user_id")["item_id"].size().rename("relevant")
    hits = lists.merge(strength, on=["user_id", "item_id"], how="inner")
    hits = hits.assign(gain=1.0 / np.log2(hits["rank"].to_numpy(dtype=float) + 1.0))
    scored = pd.DataFrame({"relevant": relevant}).join(
        hits.groupby("user_id").agg(hit_items=("item_id", "size"), dcg=("gain", "sum"), weighted_hits=("weight", "sum"))
    ).fillna(0.0)
    k = lists.groupby("user_id")["rank"].max().reindex(scored.index).fillna(0).astype(int)
    ideal_n = np.minimum(scored["relevant"].to_numpy(dtype=int), k.to_numpy())
    discounts = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, max(int(k.max()), 1) + 2)))])
    ideal = discounts[ideal_n]
    ndcg = np.divide(scored["dcg"].to_numpy(), ideal, out=np.zeros(len(scored)), where=ideal > 0)
    return pd.DataFrame({
        "user_id": scored.index.to_numpy(), "hit": scored["hit_items"].to_numpy() > 0, "ndcg": ndcg,
        "weighted_hits": scored["weighted_hits"].to_numpy(dtype=float),
    })


def score_lists(
    lists: pd.DataFrame, events: pd.DataFrame, weights: Mapping[str, float], catalogue_items: int,
    listed: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Outcome rows per (model_version, strategy, variant) group, plus 'all' rows.

    `lists`: the published rows (`user_id, rank, item_id, model_version, strategy, variant`) of
    at least every user with new events; `events`: their new events. `listed`: what every list
    held, as (users per group: `model_version, strategy, variant, listed_users`; distinct
    `model_version, strategy, variant, item_id`), for listed users and coverage; derived from
    `lists` when None (then `lists` must hold every published row)."""
    keys = ["model_version", "strategy", "variant"]
    lists = lists.assign(variant=lists["variant"] if "variant" in lists else "model")
    if listed is None:
        listed = (lists.groupby(keys, as_index=False).agg(listed_users=("user_id", "nunique")),
                  lists[[*keys, "item_id"]].drop_duplicates())
    group_users, group_items = listed
    users = lists.drop_duplicates("user_id")[["user_id", *keys]]
    scored = per_user(lists[["user_id", "rank", "item_id"]], events, weights).merge(users, on="user_id")
    main_version = group_users.sort_values("listed_users", ascending=False)["model_version"].iloc[0] if len(group_users) else ""
    k = int(lists["rank"].max()) if len(lists) else 0
    rows = []

    def add(
        mask_scored: pd.Series, mask_users: pd.Series, mask_items: pd.Series, version: str, strategy: str, variant: str
    ) -> None:
        group = scored[mask_scored]
        rows.append({
            "model_version": version, "strategy": strategy, "variant": variant, "k": k,
            "listed_users": int(group_users.loc[mask_users, "listed_users"].sum()), "active_users": len(group),
            "hit_users": int(group["hit"].sum()),
            "hit_rate": float(group["hit"].mean()) if len(group) else None,
            "ndcg": float(group["ndcg"].mean()) if len(group) else None,
            "coverage": group_items.loc[mask_items, "item_id"].nunique() / catalogue_items if catalogue_items else None,
            "weighted_hits": float(group["weighted_hits"].sum()),
        })

    def where(frame: pd.DataFrame, **values: str) -> pd.Series:
        mask = pd.Series(True, index=frame.index)
        for column, value in values.items():
            mask &= frame[column] == value
        return mask

    for version, strategy, variant in group_users[keys].itertuples(index=False):
        match = {"model_version": version, "strategy": strategy, "variant": variant}
        add(where(scored, **match), where(group_users, **match), where(group_items, **match), version, strategy, variant)
    variants = sorted(group_users["variant"].unique())
    for variant in variants:
        add(where(scored, variant=variant), where(group_users, variant=variant), where(group_items, variant=variant),
            main_version, ALL, variant)
    if len(variants) > 1:
        add(where(scored), where(group_users), where(group_items), main_version, ALL, ALL)
    out = pd.DataFrame(rows, columns=[*keys, "k", "listed_users", "active_users", "hit_users", "hit_rate", "ndcg",
                                      "coverage", "weighted_hits"])
    out["uplift"] = out["uplift_low"] = out["uplift_high"] = None
    by_variant = {r["variant"]: r for r in rows if r["strategy"] == ALL}
    if "model" in by_variant and "control" in by_variant:
        m, c = by_variant["model"], by_variant["control"]
        if (interval := relative_uplift(m["hit_users"], m["active_users"], c["hit_users"], c["active_users"])) is not None:
            at = (out["strategy"] == ALL) & (out["variant"] == "model")
            out.loc[at, ["uplift", "uplift_low", "uplift_high"]] = interval
    return out
