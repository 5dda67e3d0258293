"""Serving: top-K for every user in bounded shards, then one atomic publish."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import sqlalchemy as sa
import torch

from recsys_tasks import companions, outcomes, registry, results_db, retention
from recsys_tasks.catalogue import (
    Catalogue,
    attribute_groups,
    blocked_tokens,
    excluded_items,
    items_with_attributes,
)
from recsys_tasks.config import parse_caps
from recsys_tasks.errors import ArtifactNotFoundError, PublishError, StalePublishError
from recsys_tasks.evaluation import popularity_scorer
from recsys_tasks.inference import top_k_for_users
from recsys_tasks.model import SequenceEncoder
from recsys_tasks.prepare import Sequences, token_map
from recsys_tasks.stages.context import RunContext
from recsys_tasks.stages.decide import fill_new_items, scorer_for
from recsys_tasks.stages.ingest import ATTRIBUTES, CATALOGUE
from recsys_tasks.stages.learn import load_torch
from recsys_tasks.training import resolve_device

log = logging.getLogger(__name__)


def production_model(run: RunContext) -> dict:
    """The production version, for runs that serve it instead of a new candidate."""
    version = registry.production_version(run.store)
    if version is None:
        raise ArtifactNotFoundError(f"no production model under {run.store.uri('models')}: run the nightly DAG first")
    log.info("serving production model %s", version)
    return {"model_version": version}


def plan_shards(run: RunContext, users: int) -> list[dict]:
    """Split users into at most `num_shards` contiguous ranges of near-equal size."""
    shards = max(1, min(run.config.num_shards, users))
    bounds = np.linspace(0, users, shards + 1).round().astype(int)
    return [{"index": i, "of": shards, "start": int(a), "end": int(b)} for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]


def generate(run: RunContext, sequences: str, model_version: str, shard: dict) -> dict:
    """Top-K for users [start, end) with seen items excluded, written to the run's staging folder."""
    started = time.perf_counter()
    seqs = Sequences.from_bytes(run.store.read_bytes(sequences))
    device = resolve_device(run.config.train.device)
    scorer = scorer_for(run, model_version, seqs, device, cold_start=True)
    users = np.arange(shard["start"], shard["end"])
    control = outcomes.holdout_variant(np.asarray(seqs.user_ids, dtype=object)[users], run.config.holdout_fraction) == "control"
    blocked, caps = business_rules(run, seqs)
    with torch.no_grad():
        frame = top_k_for_users(scorer, seqs, users[~control], run.config.top_k, run.config.min_history, blocked=blocked, caps=caps)
        frame = frame.assign(model_version=model_version, variant="model")
        if control.any():
            controls = control_lists(run, seqs, users[control], model_version, device, blocked, caps)
            frame = pd.concat([frame, controls], ignore_index=True)
    key = run.path(f"recommendations/shard-{shard['index']:05d}-of-{shard['of']:05d}.parquet")
    run.store.write_frame(key, frame)
    fallback = int(frame.loc[(frame["strategy"] == "popularity") & (frame["variant"] == "model"), "user_id"].nunique())
    log.info(
        "shard %d/%d: %d users (%d on the popularity fallback, %d in the holdout), %d rows in %.1fs -> %s",
        shard["index"] + 1, shard["of"], len(users), fallback, int(control.sum()), len(frame), time.perf_counter() - started,
        run.store.uri(key),
    )
    return {"key": key, "rows": len(frame), "users": len(users), "index": shard["index"], "of": shard["of"]}


def business_rules(run: RunContext, seqs: Sequences) -> tuple[np.ndarray | None, list[tuple[np.ndarray, int]]]:
    """This run's rules over tokens: which items are never recommended (unavailable in the
    run's catalogue, `exclude_items`, `exclude_attributes`), and the diversity caps
    (`max_per_attribute`) as (group per token, N) pairs."""
    config = run.config
    items_key, attributes_key = run.path(CATALOGUE), run.path(ATTRIBUTES)
    unavailable = Catalogue(run.store.read_frame(items_key), pd.DataFrame()).unavailable if run.store.exists(items_key) else set()
    attributes = run.store.read_frame(attributes_key) if run.store.exists(attributes_key) else pd.DataFrame(columns=["item_id", "attribute"])
    excluded = excluded_items(config.exclude_items) | items_with_attributes(attributes, excluded_items(config.exclude_attributes))
    blocked = blocked_tokens(seqs.item_ids, unavailable, excluded)
    if blocked is not None:
        log.info("%d items never recommended (unavailable or excluded)", int(blocked[1:].sum()))
    caps = [(attribute_groups(seqs.item_ids, attributes, column), cap) for column, cap in parse_caps(config.max_per_attribute).items()]
    for (groups, cap), column in zip(caps, parse_caps(config.max_per_attribute), strict=True):
        log.info("at most %d items per %s in a list (%d items have one)", cap, column, int((groups >= 0).sum()))
    return blocked, caps


def control_lists(run: RunContext, seqs: Sequences, users: np.ndarray, model_version: str, device: torch.device,
                  blocked: np.ndarray | None = None, caps: list[tuple[np.ndarray, int]] = ()) -> pd.DataFrame:
    """The holdout's lists (`variant = 'control'`): the model being replaced when
    `holdout_control=production` and there is one, else the most popular unseen items."""
    production = registry.production_version(run.store) if run.config.holdout_control == "production" else None
    if production and production != model_version:
        frame = top_k_for_users(scorer_for(run, production, seqs, device), seqs, users, run.config.top_k,
                                run.config.min_history, blocked=blocked, caps=caps)
        return frame.assign(model_version=production, variant="control")
    counts = np.bincount(seqs.items, minlength=seqs.n_items + 1).astype(np.float64)
    frame = top_k_for_users(popularity_scorer(counts), seqs, users, run.config.top_k, min_history=0, blocked=blocked, caps=caps)
    return frame.assign(strategy="popularity", model_version=model_version, variant="control")


FALLBACK = "companions/fallback.parquet"  # in the run folder: what companion_lists made
SIMILAR = "companions/similar_items.parquet"


def companion_lists(run: RunContext, sequences: str, model_version: str) -> dict:
    """What the run publishes beside the users' lists, under the same business rules: the
    fallback list (`trending_days`, `top_k`) and each item's `similar_k` similar items (cosine
    of the model's item vectors; new items by their content-predicted vectors)."""
    started = time.perf_counter()
    config = run.config
    seqs = Sequences.from_bytes(run.store.read_bytes(sequences))
    blocked, _ = business_rules(run, seqs)
    log_frame = run.store.read_frame(run.path("interactions.parquet"))[["item_id", "ts"]]
    fallback = companions.trending(log_frame, seqs.item_ids, config.trending_days, config.top_k, blocked)
    similar = companions.similar(item_vectors(run, model_version, seqs), seqs.item_ids, config.similar_k, blocked)
    run.store.write_frame(run.path(FALLBACK), fallback)
    run.store.write_frame(run.path(SIMILAR), similar)
    log.info("fallback list: %s (events in the last %d days); similar items: %d items x %d in %.1fs",
             ", ".join(fallback["item_id"].head(5)) + (" ..." if len(fallback) > 5 else ""), config.trending_days,
             similar["item_id"].nunique(), config.similar_k, time.perf_counter() - started)
    return {"fallback": run.path(FALLBACK), "similar": run.path(SIMILAR), "fallback_items": len(fallback),
            "similar_items": int(similar["item_id"].nunique())}


def item_vectors(run: RunContext, model_version: str, seqs: Sequences) -> np.ndarray:
    """(n_items, d): the model's vector of each of today's items (row = token - 1): new
    catalogue items get their content-predicted vectors; items a model of another vocabulary
    never saw (production, when regenerating) get zeros, so they have no similar items."""
    checkpoint = load_torch(run, f"models/{model_version}/model.pt")
    model = SequenceEncoder.from_checkpoint(checkpoint).eval()
    if checkpoint["item_ids"] == seqs.item_ids:
        fill_new_items(run, model, seqs)
        return model.item_embedding.weight[1 : seqs.n_items + 1].detach().float().numpy()
    weight = model.item_embedding.weight.detach().float().numpy()
    to_model = token_map(seqs.item_ids, checkpoint["item_ids"])[1:]
    return np.where(to_model[:, None] > 0, weight[to_model], 0.0).astype(np.float32)


def publish(run: RunContext, model_version: str, shards: list[dict], extras: dict | None = None) -> dict:
    """Load every shard, one at a time, and switch readers to this run in one transaction,
    with the run's fallback list and similar items (`extras`: what companion_lists returned)."""
    expected = shards[0]["of"] if shards else 0
    indexes = sorted(s["index"] for s in shards)
    if not shards or indexes != list(range(expected)):
        raise PublishError(f"refusing to publish run {run.run_id}: shards {indexes} of {expected} present")
    frames = (run.store.read_frame(s["key"]) for s in sorted(shards, key=lambda s: s["index"]))  # one at a time

    def promote() -> None:  # under the publisher lock, so the DB switch and the registry agree
        registry.promote(run.store, model_version, run.run_id, reason=f"published by run {run.run_id}")

    lists = {name: run.store.read_frame(extras[name]) for name in ("fallback", "similar")} if extras else None
    try:
        outcome = results_db.publish_recommendations(
            run.db, run.tables, run.run_id, frames, run.config.retain_runs, on_switch=promote, companions=lists,
        )
    except StalePublishError as exc:
        run.record("superseded", message=str(exc))
        raise
    run.record(
        "published", model_version=model_version, rows_written=outcome["rows_written"],
        users=sum(s["users"] for s in shards), published_at=results_db.utcnow(),
    )
    for retired in outcome["retired_runs"]:
        log.info("retention: dropped the rows of run %s", retired)
    # run artifacts (a copy of the log, user-keyed sequences) follow the published runs' retention
    outcome["artifacts_pruned"] = retention.apply_retention(run.store, run.db, run.tables, run.config.retain_runs)["removed"]
    return {"model_version": model_version, **outcome}


def mark_failed(run: RunContext, message: str) -> None:
    """Record a crash in the run table unless the run already ended with its own verdict.
    With the results database unreachable the verdict waits in the artifact store and is
    written by the next run context that reaches the database."""
    try:
        current = results_db.get_run(run.db, run.tables, run.run_id)
        if current and current["status"] in {"failed_validation", "rejected", "published", "superseded"}:
            return
        run.record("failed", message=message[:2000])
    except sa.exc.DBAPIError as error:
        run.record_later("failed", message[:2000])
        log.error("results database unreachable (%s): run %s failed: %s; recorded once the database is back",
                  error.orig, run.run_id, message)
