"""Learning: self-supervised pretraining of the encoder, then next-item fine-tuning.

Pretrained encoders are shared across runs (`encoders/LATEST.json` names the newest); the
nightly run reuses it and pretrains inline only when none exists or `force_pretrain` is set.
Fine-tuning keeps the checkpoint that scores best on validation; test is not looked at here.
Both train through `fit.fit`, as `recsys bench` does; this module reads the run's data, writes
its artifacts (checkpoints read back weights-only) and, when asked for several training
processes, hands itself to `distributed.launch` by name.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Any

from recsys_tasks import PROGRESS
from recsys_tasks.config import PipelineConfig, environment
from recsys_tasks.data.prepare import Sequences, Split, everything
from recsys_tasks.learning.distributed import is_worker, launch
from recsys_tasks.learning.fit import FINETUNE, Fitted, fit
from recsys_tasks.learning.training import (
    Checkpoints,
    process_group,
    processes_for,
    resolve_device,
)
from recsys_tasks.pipeline import lists, night
from recsys_tasks.pipeline.context import RunContext
from recsys_tasks.pipeline.inputs import load_attributes, load_data, load_torch, save_torch
from recsys_tasks.scoring.evaluation import model_scorer
from recsys_tasks.scoring.transitions import choose_blend, transition_prior
from recsys_tasks.storage import layout
from recsys_tasks.storage.layout import LATEST_ENCODER, PREPARED, model_file, model_version_for

log = logging.getLogger(__name__)

def checkpoints_for(run: RunContext, name: str) -> Checkpoints:
    """Epoch checkpoints of this run's training, so a retried task resumes instead of restarting."""
    key = run.path(layout.checkpoint_file(name))
    return Checkpoints(
        save=lambda state: save_torch(run, key, state),
        load=lambda: load_torch(run, key) if run.store.exists(key) else None,
    )


def in_processes(stage: str, run: RunContext, processes: int, **kwargs: Any) -> dict:
    """Run this module's `stage` in `processes` training processes (DDP); rank 0's result."""
    return launch(
        stage_in_worker, processes, run.config.train.device,
        stage=stage, run_id=run.run_id, config=run.config.to_dict(), kwargs=kwargs,
    )


def stage_in_worker(stage: str, run_id: str, config: dict[str, Any], kwargs: dict[str, Any]) -> dict:
    """A training stage rebuilt from plain arguments inside each launched process."""
    stages = {"pretrain": pretrain, "finetune": finetune}
    return stages[stage](RunContext(run_id, PipelineConfig.from_dict(config)), **kwargs)


def pretrain(run: RunContext, sequences: str, item_attributes: str | None = None, force: bool = False,
             in_night: bool | None = None) -> dict:
    """Reuse the latest shared encoder, or (re)build it when there is none or when forced.

    The weekly pretraining DAG forces it; the nightly run forces it with `force_pretrain`. The
    nightly's pretraining (`in_night`, default: not forced by the caller) takes its share of the
    night's budget (pipeline/night.py); the weekly DAG's has only `train_minutes`.
    """
    in_night = not force if in_night is None else in_night
    config = run.config
    if not (force or config.force_pretrain) and run.store.exists(LATEST_ENCODER):
        latest = run.store.read_json(LATEST_ENCODER)
        log.info("reusing pretrained encoder %s (set force_pretrain to rebuild it)", latest["encoder"])
        return {"encoder": latest["encoder"], "reused": True}
    if config.train.pretrain_epochs == 0:
        log.info("no pretrained encoder and pretrain_epochs=0: fine-tuning starts from scratch")
        return {"encoder": None, "reused": False}
    if (processes := processes_for(config.train)) > 1 and not is_worker():
        return in_processes("pretrain", run, processes, sequences=sequences, item_attributes=item_attributes, force=True,
                            in_night=in_night)
    seqs, split = load_data(run, sequences)
    train = config.train
    if in_night:
        train = night.with_budget(train, night.plan(run, "pretrain", seqs.n_users, seqs.n_items, len(split.eval_users)))
    fitted = fit(
        seqs, split, config.model, train, config.pretrain_objectives,
        load_attributes(run, item_attributes),
        checkpoints=checkpoints_for(run, "pretrain"),
    )
    if process_group()[0] != 0:
        return {}  # rank 0 saves
    key = layout.encoder_file(run.run_id)
    save_torch(run, key, fitted.checkpoint())
    run.store.write_json(LATEST_ENCODER, {"encoder": key, "run_id": run.run_id, "history": fitted.result.history})
    log.info("pretrained encoder saved to %s in %.1fs", run.store.uri(key), fitted.result.seconds, extra=PROGRESS)
    return {"encoder": key, "reused": False, "seconds": round(fitted.result.seconds, 2)}


def starting_point(run: RunContext, encoder: str | None) -> str | None:
    """What fine-tuning starts from: the pretrained encoder, or with `warm_start_from=production`
    the production model when there is one of the same shape (items matched by id)."""
    if run.config.warm_start_from != "production":
        return encoder
    from recsys_tasks.storage import registry

    version = run.production
    if version is None:
        log.info("warm_start_from=production: no production model yet, starting from %s", encoder or "scratch")
        return encoder
    # a refit's twin: the refit trained on the held-out events of users with nothing new since,
    # which tonight's validation holds out again (registry.judged_version)
    version = registry.judged_version(run.store, version)
    key = model_file(version)
    shape = load_torch(run, key)["model_config"]
    if shape != dataclasses.asdict(run.config.model):
        log.info("warm_start_from=production: %s has another shape (%s), starting from %s", version, shape, encoder or "scratch")
        return encoder
    log.info("warm_start_from=production: fine-tuning starts from production model %s", version)
    return key


def save_version(run: RunContext, version: str, fitted: Fitted, seqs: Sequences, lineage: dict[str, Any],
                 blend: dict[str, Any] | None = None) -> None:
    """A model version's folder: config, vocabulary, the data check it was trained after,
    lineage, and last the checkpoint (the marker the registry lists versions by: a version it
    lists is whole)."""
    run.store.write_json(model_file(version, layout.MODEL_CONFIG), run.config.to_dict())
    run.store.write_json(model_file(version, layout.MODEL_VOCABULARY), {"items": seqs.item_ids})
    validation = run.path(layout.VALIDATION)
    if run.store.exists(validation):
        run.store.write_bytes(model_file(version, layout.VALIDATION), run.store.read_bytes(validation))
    run.store.write_json(model_file(version, layout.LINEAGE), lineage)
    checkpoint = fitted.checkpoint()
    if blend:  # how scoring blends in the transition prior (scoring.transitions.with_prior)
        checkpoint["transition_prior"] = {"weight": float(blend["weight"]), "two_hop": float(blend["two_hop"])}
    save_torch(run, model_file(version), checkpoint)


def chosen_blend(run: RunContext, fitted: Fitted, seqs: Sequences, split: Split) -> dict[str, Any]:
    """The transition prior's blend that scores best on validation (weight 0: the model alone)."""
    if not run.config.transition_prior or not len(split.eval_users):
        return {"weight": 0.0, "two_hop": 0.0}
    device = resolve_device(run.config.train.device)
    scorer = model_scorer(fitted.model.eval().to(device), seqs, device)
    (weight, two_hop), table = choose_blend(scorer, transition_prior(seqs, split.train_end), seqs, split.eval_users,
                                            split.train_end, exclude_history=run.config.repeats == "exclude")
    log.info("transition prior: weight %s, two-hop share %s (validation NDCG@10 %.4f, the model alone %.4f)",
             weight, two_hop, table[f"{weight}/{two_hop}"], table["0.0/0.0"])
    return {"weight": weight, "two_hop": two_hop, "validation_ndcg@10": table}


def finetune(run: RunContext, sequences: str, encoder: str | None, item_attributes: str | None = None) -> dict:
    config = run.config
    if (processes := processes_for(config.train)) > 1 and not is_worker():
        return in_processes("finetune", run, processes, sequences=sequences, encoder=encoder, item_attributes=item_attributes)
    seqs, split = load_data(run, sequences)
    encoder = starting_point(run, encoder)
    # a warm lists=changed night learns from what changed (and a replay sample), not everyone again
    train_users = lists.to_train(run, seqs) if encoder and layout.version_of(encoder) else None
    budget = night.plan(run, "finetune" if config.refit else "finetune_without_refit", seqs.n_users, seqs.n_items,
                        len(split.eval_users))
    fitted = fit(
        seqs, split, config.model, night.with_budget(config.train, budget), FINETUNE, load_attributes(run, item_attributes),
        load_torch(run, encoder) if encoder else None, checkpoints_for(run, "finetune"),
        metric=config.selection_metric, exclude_history=config.repeats == "exclude", train_users=train_users,
    )
    result = fitted.result
    log.info("fine-tuned %s over %d items", fitted.objective, seqs.n_items)
    if encoder:
        log.info("warm start from %s: %d of %d items had pretrained embeddings", encoder, fitted.warm_started_items, seqs.n_items)
    refitted = None
    if config.refit and result.best_epoch:
        # the judged candidate's training again, from the same start, for the epochs validation
        # chose, on every event: what is shipped learns from the held-out events too
        refit_budget = night.plan(run, "refit", seqs.n_users, seqs.n_items, len(split.eval_users),
                                  after_s=budget.after_training_s)
        refitted = fit(
            seqs, everything(seqs), config.model, night.with_budget(config.train, refit_budget), FINETUNE,
            load_attributes(run, item_attributes),
            load_torch(run, encoder) if encoder else None, checkpoints_for(run, "refit"), refit_epochs=result.best_epoch,
            train_users=train_users,
        )
        log.info("refit on every event for %d epochs in %.1fs", result.best_epoch, refitted.result.seconds, extra=PROGRESS)
    rank, world = process_group()
    if rank != 0:
        return {}  # rank 0 saves
    version = model_version_for(run.run_id)
    blend = chosen_blend(run, fitted, seqs, split)
    lineage = {
        "model_version": version, "run_id": run.run_id, "source_uri": config.source_uri,
        "created_at": datetime.now(UTC).isoformat(), "code_version": environment.code_version(),
        "sequences": run.store.uri(sequences), "encoder": encoder, "users": seqs.n_users, "items": seqs.n_items,
        "data": run.store.read_json(run.path(PREPARED)) if run.store.exists(run.path(PREPARED)) else None,
        "best_epoch": result.best_epoch, "validation_ndcg@10": result.best_score, "history": result.history,
        "training_processes": world, "device": str(resolve_device(config.train.device)), "objective": fitted.objective,
        "transition_prior": blend,
    }
    save_version(run, version, fitted, seqs, lineage, blend)
    shipped = None
    if refitted is not None:
        shipped = layout.refit_version(version)
        save_version(run, shipped, refitted, seqs, {
            **lineage, "model_version": shipped, "refit_of": version, "trained_on": "every event, the held-out ones too",
            "history": refitted.result.history, "created_at": datetime.now(UTC).isoformat(),
        }, blend)
    run.record("trained", model_version=version)
    log.info("model %s: best validation NDCG@10 %.4f at epoch %d", version, result.best_score or 0.0, result.best_epoch,
             extra=PROGRESS)
    return {
        "model_version": version, "best_epoch": result.best_epoch, "validation_ndcg": result.best_score,
        "refit_version": shipped, "transition_prior": {k: blend[k] for k in ("weight", "two_hop")},
        "training_processes": world,
    }
