"""Does per-position loss weighting keep length buckets' speed and random batches' quality?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_weighting.py --data ../shared/datasets/Beauty.txt \
        --epochs 10 --seeds 42 --timing-rounds 2 --out results/weighting_beauty.json

Length buckets cut each batch to its longest row (fast); with 256 rows a batch and a mean loss
per batch they weighed users, not positions. Now a batch holds about as many target positions
as 256 average rows, and every objective divides its summed loss by that count
(`objectives.PositionWeights`). Two arms, both fine-tuning only (no pretraining, so the figures
compare with MODEL_NOTES.md), the same budget (`--epochs` epochs, best epoch on validation) and
the same library path (`bench.run_benchmark`, hence `fit.fit`):

- `length_buckets`: what the nightly ships;
- `random`: 256 rows drawn at random a batch, each batch as long as its longest row (usually max_len).

Records per arm and seed: test NDCG@10 / HR@10, validation NDCG@10 and the seconds of each
training epoch (validation excluded). Arms run one after another on `--threads` threads; on a
shared machine their wall seconds drift with the load, so `--timing-rounds` more single epochs
per arm, interleaved (A, B, A, B...), give wall and CPU seconds taken under the same load.
Each run's figures are kept in `--work`, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
from pathlib import Path

import torch

from recsys_tasks.data.prepare import build_sequences, leave_one_out
from recsys_tasks.data.sources import read_interactions
from recsys_tasks.learning.fit import FINETUNE, fit
from recsys_tasks.learning.training import BATCHINGS
from recsys_tasks.ops.bench import BENCH_MODEL, BENCH_TRAIN, measured, run_benchmark

ARMS = ("length_buckets", "random")


def run_arm(args: argparse.Namespace, arm: str, seed: int, work: Path) -> dict:
    out = work / f"{arm}-seed{seed}.json"
    if not out.exists():
        print(f"--- {arm}, seed {seed}", flush=True)
        train = dataclasses.replace(BENCH_TRAIN, epochs=args.epochs, patience=args.epochs, seed=seed, pretrain_epochs=0)
        figures = run_benchmark(args.data, None, BENCH_MODEL, train, pretrain_objectives=(), batching=arm)
        out.write_text(json.dumps({**measured(), **figures}, indent=2) + "\n")
    figures = json.loads(out.read_text())
    row = {
        "arm": arm, "seed": seed, "NDCG@10": figures["metrics"]["NDCG@10"], "HR@10": figures["metrics"]["HR@10"],
        "validation_NDCG@10": figures["validation_ndcg@10"], "best_epoch": figures["best_epoch"],
        "seconds_per_epoch": figures["train_seconds_per_epoch"],
        "epoch_seconds": [h["seconds"] for h in figures["history"]],
        "epoch_validation_NDCG@10": [round(h["val"], 4) for h in figures["history"]],
        "epoch_loss": [round(h["loss"], 4) for h in figures["history"]],
    }
    print(json.dumps({k: v for k, v in row.items() if not k.startswith("epoch_")}), flush=True)
    return row


def timed_epochs(args: argparse.Namespace, arms: list[str]) -> list[dict]:
    """One training epoch per arm per round, arms interleaved: wall and CPU seconds under one load."""
    seqs = build_sequences(read_interactions(args.data))
    split = leave_one_out(seqs, min_length=3)
    train = dataclasses.replace(BENCH_TRAIN, epochs=1, patience=1, pretrain_epochs=0)
    timings = []
    for round_ in range(args.timing_rounds):
        for arm in arms:
            epoch = fit(seqs, split, BENCH_MODEL, train, FINETUNE, batches=BATCHINGS[arm]).result.history[0]
            timings.append({"arm": arm, "round": round_, "seconds": epoch["seconds"], "cpu_seconds": epoch["cpu_seconds"]})
            print(json.dumps(timings[-1]), flush=True)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="results/weighting.json")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--timing-rounds", type=int, default=2, help="interleaved single epochs per arm (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--work", default="results/weighting.tmp", help="per-run figures (resume from here)")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    work = Path(args.work) / f"e{args.epochs}"
    work.mkdir(parents=True, exist_ok=True)
    arms, seeds = args.arms.split(","), [int(s) for s in args.seeds.split(",")]
    rows = [run_arm(args, arm, seed, work) for seed in seeds for arm in arms]
    timings = timed_epochs(args, arms) if args.timing_rounds else []
    summary = []
    for arm in arms:
        mine, timed = [r for r in rows if r["arm"] == arm], [t for t in timings if t["arm"] == arm]
        summary.append({
            "arm": arm, "seeds": [r["seed"] for r in mine],
            "NDCG@10": round(statistics.mean(r["NDCG@10"] for r in mine), 4),
            "HR@10": round(statistics.mean(r["HR@10"] for r in mine), 4),
            "seconds_per_epoch": round(statistics.mean(r["seconds_per_epoch"] for r in mine), 1),
            "timed_epoch_seconds": round(statistics.median(t["seconds"] for t in timed), 1) if timed else None,
            "timed_epoch_cpu_seconds": round(statistics.median(t["cpu_seconds"] for t in timed), 1) if timed else None,
        })
    base = next((s for s in summary if s["arm"] == "random"), None)
    print(f"\n{'batching':<16}{'NDCG@10':>9}{'HR@10':>8}{'s/epoch':>9}{'timed s':>9}{'CPU s':>8}")
    for s in summary:
        if base:
            s["NDCG@10_vs_random"] = round(s["NDCG@10"] / base["NDCG@10"] - 1, 4)
            if s["timed_epoch_cpu_seconds"]:
                s["cpu_speedup_vs_random"] = round(base["timed_epoch_cpu_seconds"] / s["timed_epoch_cpu_seconds"], 2)
        print(f"{s['arm']:<16}{s['NDCG@10']:>9.4f}{s['HR@10']:>8.4f}{s['seconds_per_epoch']:>9.1f}"
              f"{s['timed_epoch_seconds'] or 0:>9.1f}{s['timed_epoch_cpu_seconds'] or 0:>8.1f}")
    result = {
        "data": args.data, "epochs": args.epochs, "threads": args.threads, "pretraining": "none",
        "model": dataclasses.asdict(BENCH_MODEL), "lr": BENCH_TRAIN.lr, "batch_size": BENCH_TRAIN.batch_size,
        "summary": summary, "runs": rows, "timed_epochs": timings,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**measured(), **result}, indent=2) + "\n")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
