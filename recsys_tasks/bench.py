"""The published full-ranking protocol, run with the same library code as the nightly DAG.

Leave-one-out (last item test, second-to-last validation), every item ranked, items of the
history excluded, HR@K / NDCG@K averaged over all users; the epoch is chosen on validation
NDCG@10 and test is computed once, for that checkpoint only.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import time
from typing import Any

import torch

from recsys_tasks.config import ModelConfig, TrainConfig
from recsys_tasks.evaluation import evaluate, model_scorer, popularity_scorer
from recsys_tasks.model import SequenceEncoder
from recsys_tasks.objectives import finetune_objective, make_objective
from recsys_tasks.prepare import build_sequences, item_popularity, leave_one_out, left_padded_windows
from recsys_tasks.sources import read_interactions, read_item_attributes
from recsys_tasks.training import resolve_device, train, warm_start

log = logging.getLogger(__name__)

# the setting of the plain SASRec reference in shared/datasets/README.md
BENCH_MODEL = ModelConfig(d_model=64, n_layers=2, n_heads=2, max_len=50, dropout=0.5)
BENCH_TRAIN = TrainConfig(pretrain_epochs=0, epochs=200, patience=10, batch_size=256, lr=1e-3)


def run_benchmark(
    data: str,
    attributes: str | None = None,
    model_config: ModelConfig = BENCH_MODEL,
    train_config: TrainConfig = BENCH_TRAIN,
    pretrain_objectives: tuple[str, ...] = (),
) -> dict[str, Any]:
    started = time.perf_counter()
    seqs = build_sequences(read_interactions(data))
    split = leave_one_out(seqs, min_length=3)
    device = resolve_device(train_config.device)
    windows = left_padded_windows(seqs.items, seqs.offsets[:-1], split.train_end, model_config.max_len + 1)
    attribute_rows = read_item_attributes(attributes) if attributes else None
    log.info("benchmark data: %d users, %d items, %d interactions", seqs.n_users, seqs.n_items, len(seqs.items))

    pretrain_seconds, encoder = 0.0, None
    if pretrain_objectives and train_config.pretrain_epochs:
        model = SequenceEncoder(seqs.n_items, model_config)
        objective = make_objective("+".join(pretrain_objectives), model, train_config.mask_prob, attribute_rows, seqs.item_ids)
        result = train(model, objective, windows, train_config, train_config.pretrain_epochs)
        pretrain_seconds, encoder = result.seconds, model.cpu().checkpoint()

    model = SequenceEncoder(seqs.n_items, model_config)
    if encoder is not None:
        warm_start(model, encoder, seqs.item_ids, seqs.item_ids, train_config.warm_start)

    def validation_ndcg(m: SequenceEncoder) -> float:
        return evaluate(model_scorer(m, seqs, device), seqs, split.eval_users, split.train_end)["NDCG@10"]

    objective = finetune_objective(model, train_config, item_popularity(seqs, split), attribute_rows, seqs.item_ids)
    result = train(model, objective, windows, train_config, train_config.epochs, validation_ndcg)
    test_end = split.train_end + 1
    with torch.no_grad():
        metrics = evaluate(model_scorer(model.to(device), seqs, device), seqs, split.eval_users, test_end)
        popularity = evaluate(popularity_scorer(item_popularity(seqs, split)), seqs, split.eval_users, test_end)
    return {
        "data": data,
        "users": seqs.n_users,
        "items": seqs.n_items,
        "interactions": int(len(seqs.items)),
        "pretrain_objectives": list(pretrain_objectives),
        "finetune_objective": objective.name,
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "popularity_metrics": {k: round(v, 4) for k, v in popularity.items()},
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "validation_ndcg@10": round(result.best_score or 0.0, 4),
        "pretrain_seconds": round(pretrain_seconds, 1),
        "train_seconds": round(result.seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "train_sequences_per_second": round(sum(h["seq_per_s"] for h in result.history) / max(len(result.history), 1)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "device": str(device),
        "model": dataclasses.asdict(model_config),
        "train": dataclasses.asdict(train_config),
    }
