"""One arm of a model/objective ablation through `recsys bench`'s own path, logged as it finishes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ablation.py --data ../shared/datasets/Beauty.txt \
        --arm "no frequency branch" --set frequency_mix=0 --epochs 20 --log results/ablation_13.json

Each arm is the benchmark's model and training (`bench.BENCH_MODEL` / `BENCH_TRAIN`), fine-tuning
only, with `--set` overrides of ModelConfig or TrainConfig fields. Each entry logs the settings it
ran with (the frequency branch became the default after the first entries: their "baseline" rows
have `frequency_mix` 0). `--epochs N --patience N` gives a fixed budget (the best epoch on validation within N);
the default patience stops early as the bench does. The run's figures (validation and test
NDCG@10 / HR@10, epochs, seconds, the validation curve) are appended to `--log`, one entry per
run, so an interrupted series keeps what finished. Choose on `validation_ndcg@10`, never on test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path

import torch

from recsys_tasks.config import field_overrides
from recsys_tasks.ops.bench import BENCH_MODEL, BENCH_TRAIN, measured, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--arm", required=True, help="a name for the log")
    parser.add_argument("--set", nargs="*", default=[], help="field=value overrides of ModelConfig / TrainConfig")
    parser.add_argument("--epochs", type=int, default=BENCH_TRAIN.epochs)
    parser.add_argument("--patience", type=int, default=BENCH_TRAIN.patience)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--log", default="results/ablation_13.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    try:
        model, train = field_overrides(args.set, BENCH_MODEL, BENCH_TRAIN)
    except ValueError as exc:
        raise SystemExit(f"--set {exc}") from None
    train = dataclasses.replace(train, epochs=args.epochs, patience=args.patience, seed=args.seed, pretrain_epochs=0)
    figures = run_benchmark(args.data, None, model, train, pretrain_objectives=())
    entry = {
        "arm": args.arm, "data": Path(args.data).name, "set": args.set, "seed": args.seed,
        "epoch_budget": args.epochs, "patience": args.patience, "threads": args.threads,
        "validation_ndcg@10": figures["validation_ndcg@10"], "test_ndcg@10": figures["metrics"]["NDCG@10"],
        "test_hr@10": figures["metrics"]["HR@10"], "best_epoch": figures["best_epoch"], "epochs_run": figures["epochs_run"],
        "train_seconds": figures["train_seconds"], "total_seconds": figures["total_seconds"],
        "seconds_per_epoch": figures["train_seconds_per_epoch"],
        "validation_curve": [round(h["val"], 4) for h in figures["history"]],
        "model": figures["model"], "train": figures["train"],
    }
    log = Path(args.log)
    runs = json.loads(log.read_text()) if log.exists() else []
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(json.dumps([*runs, {**measured(), **entry}], indent=1) + "\n")
    print(json.dumps({k: v for k, v in entry.items() if k not in ("validation_curve", "model", "train")}), flush=True)


if __name__ == "__main__":
    main()
