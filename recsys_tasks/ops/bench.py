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
import json
import logging
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys_tasks.config import ModelConfig, PipelineConfig, TrainConfig, field_overrides
from recsys_tasks.data.prepare import Split, build_sequences, item_popularity, leave_one_out
from recsys_tasks.data.sources import read_interactions, read_item_attributes
from recsys_tasks.learning.fit import FINETUNE, fit
from recsys_tasks.learning.training import BATCHINGS, resolve_device
from recsys_tasks.metrics import SELECTION_METRIC
from recsys_tasks.scoring.evaluation import full_ranking_metrics, model_scorer, popularity_scorer
from recsys_tasks.scoring.transitions import blended_scorer, choose_blend, transition_prior

log = logging.getLogger(__name__)

# what the nightly DAG pretrains with, declared once in config.py
NIGHTLY_PRETRAINING: str = next(f.default for f in dataclasses.fields(PipelineConfig) if f.name == "pretrain_objectives")

# exactly what the nightly ships (the plain SASRec reference's setting in shared/datasets/README.md,
# the frequency branch, the nightly's pretraining and its train_minutes budget)
BENCH_MODEL = ModelConfig()
BENCH_TRAIN = TrainConfig()
REFIT: bool = next(f.default for f in dataclasses.fields(PipelineConfig) if f.name == "refit")


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
    trace_test: float | None = None,
    refit: bool = REFIT,
) -> dict[str, Any]:
    """Train on `data` (a sequence file or any source) as the nightly does, choose the transition
    prior's blend on validation as it does, and report test metrics (and the model's alone).

    `pretrain_objectives`: None pretrains as the nightly does; () or "none" fine-tunes only.
    `batching`: one of `training.BATCHINGS` ("length_buckets", as shipped, or "random").
    `trace_test`: a target NDCG@10; test NDCG@10 is then also computed after every epoch (into the
    history as "test"; it chooses nothing) and the training seconds until it first reaches the
    target are reported: time to quality.
    `refit`: as the nightly's `refit`, what is scored on test is the judged model's training again
    (same start, the epoch count validation chose) with each user's validation item as one more
    target; the test item is never trained on. The judged model's own figures are reported beside
    (`judged_metrics`: the published protocol, one training event per user fewer).
    """
    started = time.perf_counter()
    # the sequences exactly as the file gives them: a repeated last item is the test target, and
    # a miss, since history items are excluded from the ranking (the published protocol)
    seqs = build_sequences(read_interactions(data), keep="all")
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
    test_end = split.train_end + 1

    def test_ndcg(m: torch.nn.Module) -> dict[str, float]:
        metrics = full_ranking_metrics(model_scorer(m, seqs, device), seqs, split.eval_users, test_end)
        return {"test": round(metrics[SELECTION_METRIC], 4)}

    figures = test_ndcg if trace_test is not None else None
    fitted = fit(seqs, split, model_config, train_config, FINETUNE, attribute_rows, encoder, batches=batches,
                 epoch_figures=figures)
    model, result = fitted.model.to(device), fitted.result
    with torch.no_grad():
        alone = full_ranking_metrics(model_scorer(model, seqs, device), seqs, split.eval_users, test_end)
        popularity = full_ranking_metrics(popularity_scorer(item_popularity(seqs, split)), seqs, split.eval_users, test_end)
        prior = transition_prior(seqs, split.train_end)
        scorer = model_scorer(model, seqs, device)
        (weight, two_hop), prior_table = choose_blend(scorer, prior, seqs, split.eval_users, split.train_end)
        # chosen on validation with training transitions; tested, as a night would use it, with
        # the transitions of every item before the target (the validation item's included)
        test_prior = transition_prior(seqs, test_end)
        judged = full_ranking_metrics(blended_scorer(scorer, test_prior, seqs.items, weight, two_hop), seqs,
                                      split.eval_users, test_end)
    refitted = None
    if refit and result.best_epoch:
        # every event before the test target: the validation item becomes a training target
        before_test = Split(train_end=np.where(np.isin(np.arange(seqs.n_users), split.eval_users), test_end, split.train_end),
                            eval_users=np.zeros(0, dtype=np.int64))
        refitted = fit(seqs, before_test, model_config, train_config, FINETUNE, attribute_rows, encoder, batches=batches,
                       refit_epochs=result.best_epoch)
        log.info("refit on every event before the test targets for %d epochs in %.1fs", result.best_epoch,
                 refitted.result.seconds)
        with torch.no_grad():
            shipped = model_scorer(refitted.model.to(device), seqs, device)
            metrics = full_ranking_metrics(blended_scorer(shipped, test_prior, seqs.items, weight, two_hop), seqs,
                                           split.eval_users, test_end)
    else:
        metrics = judged
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
        "judged_metrics": {k: round(v, 4) for k, v in judged.items()},  # before the refit, with the prior
        "model_alone_metrics": {k: round(v, 4) for k, v in alone.items()},  # judged, without the transition prior
        "refit": {"epochs": result.best_epoch, "seconds": round(refitted.result.seconds, 1)} if refitted else None,
        "transition_prior": {"weight": weight, "two_hop": two_hop, "validation_ndcg@10": prior_table},
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
        **({"time_to_target": time_to_target(result.history, trace_test)} if trace_test is not None else {}),
    }


def time_to_target(history: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """The first epoch whose traced test NDCG@10 reaches `target`, with the fine-tuning seconds
    (training only, and with each epoch's validation) spent until then; None when never reached."""
    trained = validated = 0.0
    for entry in history:
        trained += entry["seconds"]
        validated += entry.get("seconds_with_validation", entry["seconds"])
        if entry.get("test", 0.0) >= target:
            return {"target": target, "epoch": entry["epoch"], "train_seconds": round(trained, 1),
                    "seconds_with_validation": round(validated, 1)}
    return {"target": target, "epoch": None, "train_seconds": None, "seconds_with_validation": None}


def seed_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample standard deviation and range over seeds of the figures a reader compares."""
    columns = {
        "test_ndcg@10": [r["metrics"][SELECTION_METRIC] for r in runs],
        "test_hr@10": [r["metrics"]["HR@10"] for r in runs],
        "test_ndcg@10_judged": [r.get("judged_metrics", r["metrics"])[SELECTION_METRIC] for r in runs],
        "test_ndcg@10_model_alone": [r["model_alone_metrics"][SELECTION_METRIC] for r in runs],
        "validation_ndcg@10": [r["validation_ndcg@10"] for r in runs],
        "best_epoch": [r["best_epoch"] for r in runs],
        "total_minutes": [r["total_seconds"] / 60 for r in runs],
    }
    reached = [r["time_to_target"]["train_seconds"] for r in runs if r.get("time_to_target")]
    if reached:
        columns["minutes_to_target"] = [s / 60 if s is not None else float("nan") for s in reached]
    return {
        "seeds": [r["train"]["seed"] for r in runs],
        **{name: {"mean": round(statistics.mean(v), 4), "std": round(statistics.stdev(v), 4) if len(v) > 1 else 0.0,
                  "min": round(min(v), 4), "max": round(max(v), 4)} for name, v in columns.items()},
    }


def bench_command(args: Any) -> int:
    """`recsys bench`: one run per seed, a line each, the figures saved after every seed."""
    seeds = [int(s) for s in str(args.seeds or args.seed).split(",") if s.strip()]
    model, train = field_overrides(args.set, BENCH_MODEL, BENCH_TRAIN)
    changes = {"epochs": args.epochs, "patience": args.patience, "warm_start": args.warm_start,
               "auxiliary": args.auxiliary, "auxiliary_weight": args.auxiliary_weight,
               "pretrain_epochs": args.pretrain_epochs, "train_minutes": args.train_minutes}
    train = dataclasses.replace(train, **{k: v for k, v in changes.items() if v is not None})
    objectives = pretraining_names(args.pretrain)  # None: the nightly's objectives
    runs: list[dict[str, Any]] = []
    stamp = measured()  # the code as it was when the series started, not when its last seed ended
    for seed in seeds:
        figures = run_benchmark(args.data, args.attributes, model, dataclasses.replace(train, seed=seed), objectives,
                                trace_test=args.trace_test, refit=REFIT if args.refit is None else args.refit)
        runs.append(figures)
        print(seed_line(seed, figures), flush=True)
        result = {**stamp, **(runs[0] if len(seeds) == 1 else {"summary": seed_summary(runs), "runs": runs})}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(result, indent=2) + "\n"
        )  # after every seed: an interrupted series keeps what finished
    if len(runs) > 1:
        summary = result["summary"]
        test, hits = summary["test_ndcg@10"], summary["test_hr@10"]
        print(f"{len(runs)} seeds: test {SELECTION_METRIC} {test['mean']:.4f} +- {test['std']:.4f} "
              f"(range {test['min']:.4f}-{test['max']:.4f}), HR@10 {hits['mean']:.4f} +- {hits['std']:.4f}")
    print(f"saved to {args.out}")
    return 0


def measured() -> dict[str, Any]:
    """What saved figures carry: the commit measured (None outside a git checkout), whether the
    tree had changes, the date and the machine. `recsys bench` and benchmarks/ stamp with it."""
    import os
    import platform
    import subprocess
    from datetime import UTC, datetime

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }


def seed_line(seed: int, figures: dict[str, Any]) -> str:
    prior = figures["transition_prior"]
    reached = figures.get("time_to_target")
    to_target = ""
    if reached:
        to_target = (f", reached {reached['target']} after {reached['train_seconds'] / 60:.1f} min of training"
                     if reached["epoch"] else f", never reached {reached['target']}")
    return (f"seed {seed}: test {SELECTION_METRIC} {figures['metrics'][SELECTION_METRIC]:.4f} "
            f"HR@10 {figures['metrics']['HR@10']:.4f} "
            f"(validation {figures['validation_ndcg@10']:.4f}, best epoch {figures['best_epoch']} of "
            f"{figures['epochs_run']}; pretraining: {'+'.join(figures['pretrain_objectives']) or 'none'}; "
            f"transition prior {prior['weight']}/{prior['two_hop']}; before the refit "
            f"{figures.get('judged_metrics', figures['metrics'])[SELECTION_METRIC]:.4f}; the model alone "
            f"{figures['model_alone_metrics'][SELECTION_METRIC]:.4f}) "
            f"in {figures['total_seconds'] / 60:.1f} min{to_target}")
