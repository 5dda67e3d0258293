"""Serving: top-K for every user in bounded shards, then one atomic publish."""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import pandas as pd
import sqlalchemy as sa
import torch

from recsys_tasks import PROGRESS, db
from recsys_tasks.clock import utcnow
from recsys_tasks.data.prepare import Sequences
from recsys_tasks.errors import ArtifactNotFoundError, PublishError, StalePublishError
from recsys_tasks.learning.training import resolve_device
from recsys_tasks.pipeline import lists, telemetry
from recsys_tasks.pipeline.context import RunContext
from recsys_tasks.pipeline.inputs import business_rules, item_vectors, scorer_for
from recsys_tasks.scoring import companions, outcomes
from recsys_tasks.scoring.evaluation import popularity_scorer
from recsys_tasks.scoring.explain import unit_rows
from recsys_tasks.scoring.inference import top_k_for_users
from recsys_tasks.storage import layout, registry, retention

log = logging.getLogger(__name__)


def production_model(run: RunContext) -> dict:
    """The production version, for runs that serve it instead of a new candidate."""
    version = registry.production_version(run.store)
    if version is None:
        raise ArtifactNotFoundError(f"no production model under {run.store.uri('models')}: run the nightly DAG first")
    log.info("serving production model %s", version)
    return {"model_version": version}


def plan_shards(run: RunContext, users: int, sequences: str | None = None) -> list[dict]:
    """Split the users whose lists are made tonight into at most `num_shards` contiguous ranges
    of near-equal size: everyone, or with `lists=changed` those pipeline/lists.py picks (kept in
    `runs/<run>/lists.npz`; each shard then says which run the other users' lists come from)."""
    carry_from, subset = None, None
    if sequences is not None and run.config.lists == "changed":
        chosen, carry_from = lists.to_regenerate(run, Sequences.from_bytes(run.store.read_bytes(sequences)))
        if carry_from is not None:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, users=chosen)
            subset = run.path(layout.LISTS)
            run.store.write_bytes(subset, buffer.getvalue())
            users = len(chosen)
    shards = max(1, min(run.config.num_shards, users))
    bounds = np.linspace(0, users, shards + 1).round().astype(int)
    return [
        {"index": i, "of": shards, "start": int(a), "end": int(b), **({"subset": subset, "carry_from": carry_from}
                                                                       if carry_from else {})}
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]


def shard_users(run: RunContext, shard: dict) -> np.ndarray:
    """The user indices of a shard: a range of everyone, or of the lists=changed subset."""
    if shard.get("subset"):
        return np.load(io.BytesIO(run.store.read_bytes(shard["subset"])))["users"][shard["start"] : shard["end"]]
    return np.arange(shard["start"], shard["end"])


def generate(run: RunContext, sequences: str, model_version: str, shard: dict) -> dict:
    """Top-K for users [start, end) with seen items excluded, written to the run's staging folder."""
    started = time.perf_counter()
    seqs = Sequences.from_bytes(run.store.read_bytes(sequences))
    device = resolve_device(run.config.train.device)
    scorer = scorer_for(run, model_version, seqs, device, cold_start=True)
    users = shard_users(run, shard)
    control = outcomes.holdout_variant(np.asarray(seqs.user_ids, dtype=object)[users], run.config.holdout_fraction) == "control"
    blocked, caps = business_rules(run, seqs)
    baseline = layout.baseline_of(model_version)
    units = unit_rows(item_vectors(run, model_version, seqs))  # the reasons: nearest history items
    with torch.no_grad():
        frame = top_k_for_users(scorer, seqs, users[~control], run.config.top_k, run.config.min_history, blocked=blocked,
                                caps=caps, strategy=baseline or "model", exclude_history=run.config.repeats == "exclude",
                                units=units, probability=probability_of(baseline))
        frame = frame.assign(model_version=model_version, variant="model")
        if control.any():
            controls = control_lists(run, seqs, users[control], model_version, device, blocked, caps)
            frame = pd.concat([frame, controls], ignore_index=True)
    key = run.path(layout.shard_file(shard["index"], shard["of"]))
    run.store.write_frame(key, frame)
    fallback = int(frame.loc[(frame["strategy"] == "popularity") & (frame["variant"] == "model"), "user_id"].nunique())
    log.info(
        "shard %d/%d: %d users (%d on the popularity fallback, %d in the holdout), %d rows in %.1fs",
        shard["index"] + 1, shard["of"], len(users), fallback, int(control.sum()), len(frame), time.perf_counter() - started,
        extra=PROGRESS,
    )
    log.info("shard %d/%d written to %s", shard["index"] + 1, shard["of"], run.store.uri(key))
    return {"key": key, "rows": len(frame), "users": len(users), "index": shard["index"], "of": shard["of"],
            **({"carry_from": shard["carry_from"]} if shard.get("carry_from") else {})}


def control_lists(run: RunContext, seqs: Sequences, users: np.ndarray, model_version: str, device: torch.device,
                  blocked: np.ndarray | None = None, caps: list[tuple[np.ndarray, int]] = ()) -> pd.DataFrame:
    """The holdout's lists (`variant = 'control'`): the model being replaced when
    `holdout_control=production` and there is one, else the most popular unseen items."""
    production = run.production if run.config.holdout_control == "production" else None
    if production and production != model_version:
        frame = top_k_for_users(scorer_for(run, production, seqs, device), seqs, users, run.config.top_k,
                                run.config.min_history, blocked=blocked, caps=caps)
        return frame.assign(model_version=production, variant="control", reason="control")
    counts = np.bincount(seqs.items, minlength=seqs.n_items + 1).astype(np.float64)
    frame = top_k_for_users(popularity_scorer(counts), seqs, users, run.config.top_k, min_history=0, blocked=blocked, caps=caps,
                            strategy="popularity", probability="share")
    return frame.assign(model_version=model_version, variant="control", reason="control")


def probability_of(baseline: str | None) -> str | None:
    """What a night's scores mean (`scoring.explain`): a model's are logits over the catalogue
    (or log probabilities, with the transition prior), popularity's are event counts; the
    item-to-item baselines' have no probability."""
    return "softmax" if baseline is None else "share" if baseline == "popularity" else None


def companion_lists(run: RunContext, sequences: str, model_version: str) -> dict:
    """What the run publishes beside the users' lists, under the same business rules: the
    fallback list (`trending_days`, `top_k`) and each item's `similar_k` similar items (cosine
    of the model's item vectors; new items by their content-predicted vectors)."""
    started = time.perf_counter()
    config = run.config
    seqs = Sequences.from_bytes(run.store.read_bytes(sequences))
    blocked, _ = business_rules(run, seqs)
    log_frame = run.store.read_frame(run.path(layout.INTERACTIONS))[["item_id", "ts"]]
    fallback = companions.trending(log_frame, seqs.item_ids, config.trending_days, config.top_k, blocked)
    similar = companions.similar(item_vectors(run, model_version, seqs), seqs.item_ids, config.similar_k, blocked)
    items = run.store.read_frame(run.path(layout.CATALOGUE)) if run.store.exists(run.path(layout.CATALOGUE)) else None
    attributes = run.store.read_frame(run.path(layout.ATTRIBUTES)) if run.store.exists(run.path(layout.ATTRIBUTES)) else None
    snapshot = companions.catalogue_snapshot(seqs.item_ids, items, attributes, blocked)
    run.store.write_frame(run.path(layout.FALLBACK), fallback)
    run.store.write_frame(run.path(layout.SIMILAR), similar)
    run.store.write_frame(run.path(layout.ITEMS), snapshot)
    log.info("fallback list: %s (events in the last %d days); similar items: %d items x %d in %.1fs",
             ", ".join(fallback["item_id"].head(5)) + (" ..." if len(fallback) > 5 else ""), config.trending_days,
             similar["item_id"].nunique(), config.similar_k, time.perf_counter() - started)
    return {"fallback": run.path(layout.FALLBACK), "similar": run.path(layout.SIMILAR), "items": run.path(layout.ITEMS),
            "titled_items": int(snapshot["title"].notna().sum()), "fallback_items": len(fallback),
            "similar_items": int(similar["item_id"].nunique())}


def publish(run: RunContext, model_version: str, shards: list[dict], extras: dict | None = None) -> dict:
    """Load every shard, one at a time, and switch readers to this run in one transaction,
    with the run's fallback list and similar items (`extras`: what companion_lists returned)."""
    expected = shards[0]["of"] if shards else 0
    indexes = sorted(s["index"] for s in shards)
    if not shards or indexes != list(range(expected)):
        raise PublishError(f"refusing to publish run {run.run_id}: shards {indexes} of {expected} present")
    frames = (run.store.read_frame(s["key"]) for s in sorted(shards, key=lambda s: s["index"]))  # one at a time

    def promote() -> None:  # under the publisher lock, so the DB switch and the registry agree
        if layout.baseline_of(model_version) is None:  # a baseline's night leaves the registry as it is
            registry.promote(run.store, model_version, run.run_id, reason=f"published by run {run.run_id}")

    companion = {name: run.store.read_frame(extras[name]) for name in ("fallback", "similar", "items")
                 if name in (extras or {})}
    try:
        outcome = db.publish_recommendations(
            run.db, run.tables, run.run_id, frames, run.config.retain_runs, on_switch=promote, companions=companion,
            carry_from=shards[0].get("carry_from"),
        )
    except StalePublishError as exc:
        run.record("superseded", message=str(exc))
        raise
    made = sum(s["users"] for s in shards)
    users = made + outcome["users_carried"]
    run.record("published", model_version=model_version, rows_written=outcome["rows_written"], users=users,
               published_at=utcnow())
    telemetry.gauges({"publish.rows": outcome["rows_written"], "publish.users": users, "lists.age_hours": 0.0})
    carried = (f", {outcome['users_carried']} of them keeping run {shards[0]['carry_from']}'s lists"
               if shards[0].get("carry_from") else "")
    log.info("published %d rows for %d users%s (run %s, %s); readers see them now", outcome["rows_written"], users,
             carried, run.run_id, model_version, extra=PROGRESS)
    for retired in outcome["retired_runs"]:
        log.info("retention: dropped the rows of run %s", retired)
    # run artifacts (a copy of the log, user-keyed sequences) follow the published runs' retention
    outcome["artifacts_pruned"] = retention.apply_retention(run.store, run.db, run.tables, run.config.retain_runs)["removed"]
    return {"run_id": run.run_id, "model_version": model_version, "rows": outcome["rows_written"],
            "users": users, **outcome}


def mark_failed(run: RunContext, message: str) -> None:
    """Record a crash in the run table unless the run already ended with its own verdict.
    With the results database unreachable the verdict waits in the artifact store and is
    written by the next run context that reaches the database."""
    try:
        current = db.get_run(run.db, run.tables, run.run_id)
        if current and current["status"] in {"failed_validation", "rejected", "published", "superseded"}:
            return
        run.record("failed", message=message[:2000])
    except sa.exc.DBAPIError as error:
        run.record_later("failed", message[:2000])
        log.error("results database unreachable (%s): run %s failed: %s; recorded once the database is back",
                  error.orig, run.run_id, message)
