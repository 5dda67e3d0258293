"""The published full-ranking protocol, run with the same library code as the nightly DAG.

Leave-one-out (last item test, second-to-last validation), every item ranked, items of the
history excluded, HR@K / NDCG@K averaged over all users; the epoch is chosen on validation
NDCG@10 and test is computed once, for that checkpoint only.

By default it trains what the nightly DAG ships: pretraining with the nightly's objectives
(`PipelineConfig.pretrain_objectives`) for the nightly's `pretrain_epochs`, then fine-tuning
with the configured auxiliary objectives, through the same `fit.fit` as the stages. The model
and optimiser settings are those of the plain SASRec reference in shared/datasets/README.md,
so the figures compare with the published tables; arguments change one arm at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import statistics
import time
from typing import Any

import torch

from recsys_tasks.config import ModelConfig, PipelineConfig, TrainConfig
from recsys_tasks.evaluation import evaluate, model_scorer, popularity_scorer
from recsys_tasks.fit import FINETUNE, fit
from recsys_tasks.prepare import build_sequences, item_popularity, leave_one_out
from recsys_tasks.sources import read_interactions, read_item_attributes
from recsys_tasks.training import BATCHINGS, resolve_device

log = logging.getLogger(__name__)

# what the nightly DAG pretrains with, declared once in config.py
NIGHTLY_PRETRAINING: str = next(f.default for f in dataclasses.fields(PipelineConfig) if f.name == "pretrain_objectives")

# the setting of the plain SASRec reference in shared/datasets/README.md; pretraining as the nightly's
BENCH_MODEL = ModelConfig(d_model=64, n_layers=2, n_heads=2, max_len=50, dropout=0.5)
BENCH_TRAIN = TrainConfig(
    pretrain_epochs=TrainConfig().pretrain_epochs, epochs=200, patience=10, batch_size=256, lr=1e-3,
)


def pretraining_names(objectives: str | tuple[str, ...] | None) -> str:
    """None: the nightly's objectives; "" / () / "none": no pretraining; a tuple is "+"-joined."""
    if objectives is None:
        return NIGHTLY_PRETRAINING
    joined = "+".join(objectives) if isinstance(objectives, tuple | list) else objectives.replace(",", "+")
    return "" if joined in ("", "none") else joined


def run_benchmark(
    data: str,
    attributes: str | None = None,
    model_config: ModelConfig = BENCH_MODEL,
    train_config: TrainConfig = BENCH_TRAIN,
    pretrain_objectives: str | tuple[str, ...] | None = None,
    batching: str = "length_buckets",
) -> dict[str, Any]:
    """Train on `data` (a sequence file or any source) as the nightly does and report test metrics.

    `pretrain_objectives`: None pretrains as the nightly does; () or "none" fine-tunes only.
    `batching`: one of `training.BATCHINGS` ("length_buckets", as shipped, or "random").
    """
    started = time.perf_counter()
    seqs = build_sequences(read_interactions(data))
    split = leave_one_out(seqs, min_length=3)
    device = resolve_device(train_config.device)
    attribute_rows = read_item_attributes(attributes) if attributes else None
    batches = BATCHINGS[batching]
    log.info("benchmark data: %d users, %d items, %d interactions", seqs.n_users, seqs.n_items, len(seqs.items))

    objectives = pretraining_names(pretrain_objectives)
    pretrained = None
    if objectives and train_config.pretrain_epochs:
        pretrained = fit(seqs, split, model_config, train_config, objectives, attribute_rows, batches=batches)
    encoder = pretrained.checkpoint() if pretrained else None
    fitted = fit(seqs, split, model_config, train_config, FINETUNE, attribute_rows, encoder, batches=batches)
    model, result = fitted.model.to(device), fitted.result

    test_end = split.train_end + 1
    with torch.no_grad():
        metrics = evaluate(model_scorer(model, seqs, device), seqs, split.eval_users, test_end)
        popularity = evaluate(popularity_scorer(item_popularity(seqs, split)), seqs, split.eval_users, test_end)
    epoch_seconds = [h["seconds"] for h in result.history]
    return {
        "data": data,
        "users": seqs.n_users,
        "items": seqs.n_items,
        "interactions": int(len(seqs.items)),
        "pretrain_objectives": objectives.split("+") if pretrained else [],
        "finetune_objective": fitted.objective,
        "batching": batching,
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "popularity_metrics": {k: round(v, 4) for k, v in popularity.items()},
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "validation_ndcg@10": round(result.best_score or 0.0, 4),
        "pretrain_seconds": round(pretrained.result.seconds, 1) if pretrained else 0.0,
        "train_seconds": round(result.seconds, 1),
        "train_seconds_per_epoch": round(statistics.mean(epoch_seconds), 2) if epoch_seconds else 0.0,
        "total_seconds": round(time.perf_counter() - started, 1),
        "train_sequences_per_second": round(sum(h["seq_per_s"] for h in result.history) / max(len(result.history), 1)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "device": str(device),
        "model": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(train_config),
        "pretrain_history": pretrained.result.history if pretrained else [],
        "history": result.history,
    }
