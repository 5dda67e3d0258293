"""Training speed of the full softmax against the sampled one, by catalogue size.

    .venv/bin/python benchmarks/bench_sampled_softmax.py --items 20000,100000 --out results/sampled_softmax_speed.json

One epoch of next-item fine-tuning (the shipped model, `ModelConfig()`, batches of 256) over
`--users` synthetic left-padded windows of 50 items, for each catalogue size and each arm: the
full softmax over the catalogue, and the sampled one (in-batch plus 1,024 shared negatives drawn
by popularity, or uniformly), logQ-corrected. The arms alternate (A, B, C, A, B, C) `--repeats`
times and the best epoch of each is kept; sequences per second are reported.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from recsys_tasks.config import ModelConfig, TrainConfig
from recsys_tasks.learning.model import SequenceEncoder
from recsys_tasks.learning.objective_builder import make_objective
from recsys_tasks.learning.training import train
from recsys_tasks.ops.bench import measured

ARMS = {"full": ("next_item", "popularity"), "sampled_popularity": ("next_item_sampled", "popularity"),
        "sampled_uniform": ("next_item_sampled", "uniform")}


def windows(users: int, items: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows whose items follow a Zipf-like popularity (as real logs do), and their counts."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, items + 1) ** 0.8
    rows = rng.choice(np.arange(1, items + 1), size=(users, length + 1), p=weights / weights.sum())
    return rows.astype(np.int64), np.bincount(rows.ravel(), minlength=items + 1).astype(np.float64)


def epoch_seconds(arm: str, rows: np.ndarray, counts: np.ndarray, items: int) -> float:
    name, sampler = ARMS[arm]
    model = SequenceEncoder(items, ModelConfig())
    objective = make_objective(name, model, 0.2, item_counts=counts, negatives=1024, sampler=sampler)
    tick = time.perf_counter()
    train(model, objective, rows, TrainConfig(batch_size=256), epochs=1)
    return time.perf_counter() - tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", default="20000,100000")
    parser.add_argument("--users", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stamp = measured()
    sizes = {}
    for items in (int(n) for n in args.items.split(",")):
        rows, counts = windows(args.users, items, ModelConfig().max_len, seed=items)
        best = {arm: float("inf") for arm in ARMS}
        for _ in range(args.repeats):
            for arm in ARMS:
                best[arm] = min(best[arm], epoch_seconds(arm, rows, counts, items))
        sizes[items] = {arm: {"epoch_seconds": round(s, 2), "sequences_per_s": round(args.users / s)}
                        for arm, s in best.items()}
        sizes[items]["sampled_speedup"] = round(best["full"] / best["sampled_popularity"], 2)
        print(f"{items} items: " + ", ".join(f"{arm} {v['sequences_per_s']} seq/s" for arm, v in sizes[items].items()
                                             if isinstance(v, dict)) + f"; sampled {sizes[items]['sampled_speedup']}x",
              flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**stamp, "users": args.users, "threads": args.threads, "sizes": sizes},
                                         indent=1) + "\n")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
