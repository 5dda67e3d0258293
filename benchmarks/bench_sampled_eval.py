"""Does the gate's sampled evaluation tell the truth? Its 95% intervals against the full evaluation.

    .venv/bin/python benchmarks/bench_sampled_eval.py --data ../shared/datasets/Beauty.txt \\
        --sample 5000 --draws 200 --out results/sampled_eval_beauty.json

Every Beauty user's test item is ranked once by each scorer the gate compares (a briefly
trained model, popularity, item-kNN: the nightly's item-to-item baseline at this catalogue size),
as `decide.evaluate` ranks them. Then `--draws` seeded samples of `--sample` users are drawn, as
`eval_sample_users` draws them, and for each: the model's NDCG@10 with its 95% interval, and the
interval of the model-minus-baseline difference the gate tests. Saved: how often each interval
covers the full evaluation's figure (95% is the promise), the intervals' half-widths, the time
the full and the sampled evaluation take, and whether the gate's verdict on the sample agrees
with the verdict on everyone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from recsys_tasks.data.prepare import build_sequences, item_popularity, leave_one_out
from recsys_tasks.data.sources import read_interactions
from recsys_tasks.learning.fit import FINETUNE, fit
from recsys_tasks.metrics import difference_interval, mean_covariance, per_user
from recsys_tasks.ops.bench import BENCH_MODEL, BENCH_TRAIN, measured
from recsys_tasks.pipeline.decide import evaluation_sample
from recsys_tasks.scoring.evaluation import baseline_scorer, model_scorer, ranked_metrics

METRIC = "NDCG@10"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--sample", type=int, default=5000, help="users per sample (eval_sample_users)")
    parser.add_argument("--draws", type=int, default=200, help="samples drawn")
    parser.add_argument("--epochs", type=int, default=5, help="the model's fine-tuning epochs (its quality is not the point)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    seqs = build_sequences(read_interactions(args.data))
    split = leave_one_out(seqs)
    end = split.train_end + 1
    tick = time.perf_counter()
    fitted = fit(seqs, split, BENCH_MODEL, dataclasses.replace(BENCH_TRAIN, epochs=args.epochs), FINETUNE)
    train_s = time.perf_counter() - tick
    popularity = item_popularity(seqs, split)
    scorers = {"model": model_scorer(fitted.model.eval(), seqs, torch.device("cpu")),
               "popularity": baseline_scorer("popularity", seqs, split.train_end),
               "item_knn": baseline_scorer("item_knn", seqs, split.train_end)}
    full, values, seconds = {}, {}, {}
    for name, scorer in scorers.items():
        tick = time.perf_counter()
        metrics, ranks = ranked_metrics(scorer, seqs, split.eval_users, end, popularity)
        seconds[name] = round(time.perf_counter() - tick, 2)
        full[name], values[name] = metrics[METRIC], per_user(METRIC, ranks)
    position = {u: i for i, u in enumerate(split.eval_users)}
    strongest = max(("popularity", "item_knn"), key=full.get)
    covered = {"model": 0, f"model - {strongest}": 0}
    widths, agree = [], 0
    full_verdict = full["model"] > full[strongest]
    for seed in range(args.draws):
        users = evaluation_sample(split.eval_users, args.sample, seed)
        rows = np.fromiter((position[u] for u in users), dtype=np.int64, count=len(users))
        part = {name: v[rows] for name, v in values.items()}
        cov = mean_covariance(part)
        mean = {name: float(v.mean()) for name, v in part.items()}
        half = 1.96 * np.sqrt(cov["model"]["model"])
        covered["model"] += abs(mean["model"] - full["model"]) <= half
        diff_half = difference_interval(cov, "model", strongest)
        covered[f"model - {strongest}"] += abs((mean["model"] - mean[strongest]) - (full["model"] - full[strongest])) <= diff_half
        widths.append((float(half), float(diff_half)))
        agree += (mean["model"] - mean[strongest] > diff_half) == full_verdict
    tick = time.perf_counter()
    users = evaluation_sample(split.eval_users, args.sample, 0)
    for scorer in scorers.values():
        ranked_metrics(scorer, seqs, users, end, popularity)
    sampled_s = round(time.perf_counter() - tick, 2)
    out = {
        **measured(), "data": args.data, "users": int(len(split.eval_users)), "items": seqs.n_items,
        "sample": args.sample, "draws": args.draws, "model_epochs": args.epochs, "train_seconds": round(train_s, 1),
        "full": {name: round(v, 5) for name, v in full.items()}, "strongest_baseline": strongest,
        "coverage": {name: round(c / args.draws, 3) for name, c in covered.items()},
        "half_width_mean": {"model": round(float(np.mean([w[0] for w in widths])), 5),
                            f"model - {strongest}": round(float(np.mean([w[1] for w in widths])), 5)},
        "gate_verdict_on_everyone": "blessed" if full_verdict else "rejected",
        "samples_agreeing_with_it": round(agree / args.draws, 3),
        "seconds": {"full_evaluation": seconds, "full_total": round(sum(seconds.values()), 1), "one_sample_total": sampled_s},
    }
    print(json.dumps(out, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
