"""Full-ranking evaluation at scale: every item ranked for every user, in bounded memory.

    .venv/bin/python benchmarks/bench_evaluation.py --users 100000 --items 50000 --out results/evaluation.json

Synthetic embeddings and histories (as in bench_generation.py); each user's last item is the
target. Prints and saves seconds, users/s and peak RSS above the start, next to the size of the
users x items score matrix that is never built.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from bench_generation import PeakRss, synthetic_case

from recsys_tasks.ops.bench import measured
from recsys_tasks.scoring.evaluation import full_ranking_metrics
from recsys_tasks.scoring.inference import embedding_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--out", default="results/evaluation.json")
    args = parser.parse_args()

    seqs, user_vectors, item_vectors = synthetic_case(args.users, args.items, args.dim)
    users = np.arange(args.users)
    target = seqs.offsets[1:] - 1  # the last item of each history is held out
    popularity = np.bincount(seqs.items, minlength=args.items + 1).astype(np.float64)
    with PeakRss() as memory:
        started = time.perf_counter()
        metrics = full_ranking_metrics(embedding_scorer(user_vectors, item_vectors), seqs, users, target, popularity)
        seconds = time.perf_counter() - started
    figures = {
        "users": args.users, "items": args.items, "seconds": round(seconds, 2),
        "users_per_second": round(args.users / seconds), "peak_rss_above_start_mb": memory.peak_mb,
        "full_score_matrix_never_built_mb": round(args.users * (args.items + 1) * 4 / 2**20),
        "metrics": {k: round(v, 5) for k, v in metrics.items()},
    }
    print(json.dumps({**measured(), **figures}, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**measured(), **figures}, indent=2) + "\n")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
