"""Learning: self-supervised pretraining of the encoder, then next-item fine-tuning.

Pretrained encoders are shared across runs (`encoders/LATEST.json` names the newest); the
nightly run reuses it and pretrains inline only when none exists or `force_pretrain` is set.
Fine-tuning keeps the checkpoint that scores best on validation; test is not looked at here.
"""

from __future__ import annotations

import hashlib
import io
import logging
from datetime import UTC, datetime

import pandas as pd
import torch

from recsys_tasks import __version__
from recsys_tasks.distributed import is_worker, launch
from recsys_tasks.evaluation import evaluate, model_scorer
from recsys_tasks.model import SequenceEncoder
from recsys_tasks.objectives import finetune_objective, make_objective
from recsys_tasks.prepare import Sequences, Split, item_popularity, left_padded_windows, split_for
from recsys_tasks.stages.context import RunContext
from recsys_tasks.stages.ingest import PREPARED
from recsys_tasks.training import Checkpoints, process_group, processes_for, resolve_device, train, warm_start

log = logging.getLogger(__name__)

LATEST_ENCODER = "encoders/LATEST.json"


def model_version_for(run_id: str) -> str:
    """Stable per run, so a retried fine-tune overwrites its own version instead of adding one."""
    return "v-" + hashlib.sha1(run_id.encode()).hexdigest()[:10]


def save_torch(run: RunContext, key: str, payload: dict) -> str:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return run.store.write_bytes(key, buffer.getvalue())


def load_torch(run: RunContext, key: str) -> dict:
    return torch.load(io.BytesIO(run.store.read_bytes(key)), map_location="cpu", weights_only=False)


def load_data(run: RunContext, sequences: str) -> tuple[Sequences, Split]:
    seqs = Sequences.from_bytes(run.store.read_bytes(sequences))
    return seqs, split_for(run.config, seqs)


def training_windows(run: RunContext, seqs: Sequences, split: Split):
    # (U, max_len + 1): one extra item so next-item inputs and targets both span max_len
    return left_padded_windows(seqs.items, seqs.offsets[:-1], split.train_end, run.config.model.max_len + 1)


def load_attributes(run: RunContext, item_attributes: str | None) -> pd.DataFrame | None:
    """The run's `item_id, attribute` rows, or None when the run has none."""
    return run.store.read_frame(item_attributes) if item_attributes else None


def checkpoints_for(run: RunContext, name: str) -> Checkpoints:
    """Epoch checkpoints of this run's training, so a retried task resumes instead of restarting."""
    key = run.path(f"checkpoints/{name}.pt")
    return Checkpoints(
        save=lambda state: save_torch(run, key, state),
        load=lambda: load_torch(run, key) if run.store.exists(key) else None,
    )


def pretrain(run: RunContext, sequences: str, item_attributes: str | None = None, force: bool = False) -> dict:
    """Reuse the latest shared encoder, or (re)build it when there is none or when forced.

    The weekly pretraining DAG forces it; the nightly run forces it with `force_pretrain`.
    """
    config = run.config
    if not (force or config.force_pretrain) and run.store.exists(LATEST_ENCODER):
        latest = run.store.read_json(LATEST_ENCODER)
        log.info("reusing pretrained encoder %s (set force_pretrain to rebuild it)", latest["encoder"])
        return {"encoder": latest["encoder"], "reused": True}
    if config.train.pretrain_epochs == 0:
        log.info("no pretrained encoder and pretrain_epochs=0: fine-tuning starts from scratch")
        return {"encoder": None, "reused": False}
    if (processes := processes_for(config.train)) > 1 and not is_worker():
        return launch(run.run_id, config, "pretrain", processes, sequences=sequences, item_attributes=item_attributes, force=True)
    seqs, split = load_data(run, sequences)
    model = SequenceEncoder(seqs.n_items, config.model)
    attributes = load_attributes(run, item_attributes)
    objective = make_objective(config.pretrain_objectives, model, config.train.mask_prob, attributes, seqs.item_ids)
    result = train(
        model, objective, training_windows(run, seqs, split), config.train, config.train.pretrain_epochs,
        checkpoints=checkpoints_for(run, "pretrain"),
    )
    if process_group()[0] != 0:
        return {}  # rank 0 saves
    key = f"encoders/{run.key}/encoder.pt"
    save_torch(run, key, {**model.cpu().checkpoint(), "item_ids": seqs.item_ids, "objective": objective.name})
    run.store.write_json(LATEST_ENCODER, {"encoder": key, "run_id": run.run_id, "history": result.history})
    log.info("pretrained encoder saved to %s in %.1fs", run.store.uri(key), result.seconds)
    return {"encoder": key, "reused": False, "seconds": round(result.seconds, 2)}


def finetune(run: RunContext, sequences: str, encoder: str | None, item_attributes: str | None = None) -> dict:
    config = run.config
    if (processes := processes_for(config.train)) > 1 and not is_worker():
        return launch(
            run.run_id, config, "finetune", processes, sequences=sequences, encoder=encoder, item_attributes=item_attributes,
        )
    seqs, split = load_data(run, sequences)
    model = SequenceEncoder(seqs.n_items, config.model)
    if encoder:
        pretrained = load_torch(run, encoder)
        matched = warm_start(model, pretrained, seqs.item_ids, pretrained["item_ids"], config.train.warm_start)
        log.info("warm start from %s: %d of %d items had pretrained embeddings", encoder, matched, seqs.n_items)
    device = resolve_device(config.train.device)

    def validation_ndcg(m: SequenceEncoder) -> float:
        return evaluate(model_scorer(m, seqs, device), seqs, split.eval_users, split.train_end)["NDCG@10"]

    attributes = load_attributes(run, item_attributes)
    objective = finetune_objective(model, config.train, item_popularity(seqs, split), attributes, seqs.item_ids)
    log.info("fine-tuning objective: %s over %d items", objective.name, seqs.n_items)
    result = train(
        model, objective, training_windows(run, seqs, split), config.train, config.train.epochs, validation_ndcg,
        checkpoints=checkpoints_for(run, "finetune"),
    )
    rank, world = process_group()
    if rank != 0:
        return {}  # rank 0 saves
    version = model_version_for(run.run_id)
    prefix = f"models/{version}"
    save_torch(run, f"{prefix}/model.pt", {**model.cpu().checkpoint(), "item_ids": seqs.item_ids})
    run.store.write_json(f"{prefix}/config.json", config.to_dict())
    run.store.write_json(f"{prefix}/vocabulary.json", {"items": seqs.item_ids})
    validation = run.path("validation.json")
    if run.store.exists(validation):  # the data check this model was trained after
        run.store.write_bytes(f"{prefix}/validation.json", run.store.read_bytes(validation))
    lineage = {
        "model_version": version, "run_id": run.run_id, "source_uri": config.source_uri,
        "created_at": datetime.now(UTC).isoformat(), "code_version": __version__,
        "sequences": run.store.uri(sequences), "encoder": encoder, "users": seqs.n_users, "items": seqs.n_items,
        "data": run.store.read_json(run.path(PREPARED)) if run.store.exists(run.path(PREPARED)) else None,
        "best_epoch": result.best_epoch, "validation_ndcg@10": result.best_score, "history": result.history,
        "training_processes": world, "device": str(device), "objective": objective.name,
    }
    run.store.write_json(f"{prefix}/lineage.json", lineage)
    run.record("trained", model_version=version)
    log.info("model %s: best validation NDCG@10 %.4f at epoch %d", version, result.best_score or 0.0, result.best_epoch)
    return {
        "model_version": version, "best_epoch": result.best_epoch, "validation_ndcg": result.best_score,
        "training_processes": world,
    }
