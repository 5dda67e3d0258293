"""Simulated nightly retraining: how the product is used, night after night.

The log's time axis is cut into nights: night 0 holds the first `--history` share of events
by time and each following night adds an equal share; on sequence files, whose times are
positions, night 0 holds all but each user's last `--nights` items and each night reveals
one more item per user. Every night trains on everything up to that night
with a fixed fine-tuning budget (`--budget` epochs, what a nightly time box allows) from
one of three starts, and is scored on the next night's events: for each user active
tomorrow, their first new item, ranked against every item, their history excluded.

Starts: `scratch` (a fresh model every night), `encoder` (the weekly encoder: self-supervised
pretraining on night 0's data, re-used every night), `yesterday` (last night's model of the
same arm; night 0 trains it from scratch with `--first-budget` epochs).

    .venv/bin/python benchmarks/bench_nightly.py --data ../shared/datasets/Beauty.txt --nights 4 \\
        --budget 3 --starts scratch,encoder,yesterday --seeds 42,43,44 --out results/nightly_beauty.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys_tasks.data.prepare import build_sequences, leave_one_out
from recsys_tasks.data.sources import read_interactions
from recsys_tasks.learning.fit import FINETUNE, fit
from recsys_tasks.ops.bench import BENCH_MODEL, BENCH_TRAIN, NIGHTLY_PRETRAINING, measured
from recsys_tasks.scoring.evaluation import full_ranking_metrics, model_scorer

STARTS = ("scratch", "encoder", "yesterday")


def next_day_targets(frame: pd.DataFrame, cut: float, until: float) -> pd.DataFrame:
    """Per user active in (cut, until] with history up to `cut`: their first event there on an
    item not in that history."""
    before, after = frame[frame["t"] <= cut], frame[(frame["t"] > cut) & (frame["t"] <= until)]
    seen = set(zip(before["user_id"], before["item_id"], strict=True))
    after = after[after["user_id"].isin(set(before["user_id"]))]
    unseen = np.fromiter(
        ((u, i) not in seen for u, i in zip(after["user_id"], after["item_id"], strict=True)), dtype=bool, count=len(after)
    )
    fresh = after[unseen]
    return fresh.sort_values(["user_id", "t"]).groupby("user_id").head(1)


def score_next_day(model, history: pd.DataFrame, targets: pd.DataFrame, items: list[str]) -> dict[str, float]:
    """HR/NDCG@10 of tomorrow's first new item, every item ranked, history excluded."""
    joined = pd.concat([history[history["user_id"].isin(set(targets["user_id"]))], targets])
    seqs = build_sequences(joined.drop(columns="t"), known_items=items)
    users = np.arange(seqs.n_users)
    with torch.no_grad():
        metrics = full_ranking_metrics(model_scorer(model.eval(), seqs, torch.device("cpu")), seqs, users, seqs.offsets[1:] - 1)
    return {k: round(v, 4) for k, v in metrics.items() if k in ("HR@10", "NDCG@10")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--nights", type=int, default=4)
    parser.add_argument("--history", type=float, default=0.8, help="share of events before the first night")
    parser.add_argument("--budget", type=int, default=3, help="fine-tuning epochs per night")
    parser.add_argument("--first-budget", type=int, default=20, help="epochs of night 0 for the yesterday arm")
    parser.add_argument("--pretrain-epochs", type=int, default=10, help="the weekly encoder's epochs")
    parser.add_argument("--starts", default=",".join(STARTS))
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    frame = read_interactions(args.data)
    frame = frame.assign(user_id=frame["user_id"].astype(str), item_id=frame["item_id"].astype(str))
    if args.data.endswith(".txt"):  # a sequence file's times are positions: night n reveals each user's next item
        order = frame.groupby("user_id").cumcount() + 1
        frame = frame.assign(t=order - frame.groupby("user_id")["item_id"].transform("size"))  # the last item: 0
        cuts = [float(n - args.nights) for n in range(args.nights + 1)]
    else:
        frame = frame.assign(t=frame["ts"].astype("int64").to_numpy() / 1e9)
        shares = [args.history + (1 - args.history) * n / args.nights for n in range(args.nights + 1)]
        cuts = [float(np.quantile(frame["t"], q)) for q in shares]
    items = sorted(frame["item_id"].unique())
    starts = [s for s in args.starts.split(",") if s]
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        train = dataclasses.replace(BENCH_TRAIN, seed=seed, patience=args.budget + 1)
        yesterday = None
        encoder = None
        for night in range(args.nights):
            data = frame[frame["t"] <= cuts[night]]
            seqs = build_sequences(data.drop(columns="t"), known_items=items)
            split = leave_one_out(seqs, min_length=3)
            targets = next_day_targets(frame, cuts[night], cuts[night + 1])
            if "encoder" in starts and encoder is None:  # the weekly encoder, built once on night 0
                tick = time.perf_counter()
                encoder = fit(seqs, split, BENCH_MODEL, dataclasses.replace(train, pretrain_epochs=args.pretrain_epochs),
                              NIGHTLY_PRETRAINING).checkpoint()
                rows.append(
                    {
                        "seed": seed,
                        "night": night,
                        "start": "weekly pretraining",
                        "minutes": round((time.perf_counter() - tick) / 60, 2),
                    }
                )
            for start in starts:
                epochs = args.first_budget if start == "yesterday" and yesterday is None else args.budget
                warm = {"scratch": None, "encoder": encoder, "yesterday": yesterday}[start]
                tick = time.perf_counter()
                fitted = fit(seqs, split, BENCH_MODEL, dataclasses.replace(train, epochs=epochs), FINETUNE, encoder=warm)
                minutes = (time.perf_counter() - tick) / 60
                if start == "yesterday":
                    yesterday = fitted.checkpoint()
                metrics = score_next_day(fitted.model, data, targets, items)
                row = {"seed": seed, "night": night, "start": start, "epochs": epochs, "minutes": round(minutes, 2),
                       "events": len(data), "next_day_users": len(targets), **metrics}
                rows.append(row)
                logging.info("%s", row)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps({**measured(), "args": vars(args), "rows": rows}, indent=1))
    summary = []
    for start in starts:
        for night in range(args.nights):
            picked = [r for r in rows if r["start"] == start and r["night"] == night]
            values = [r["NDCG@10"] for r in picked]
            summary.append(
                {
                    "start": start,
                    "night": night,
                    "NDCG@10": round(statistics.mean(values), 4),
                    "spread": round(max(values) - min(values), 4),
                    "minutes": round(statistics.mean(r["minutes"] for r in picked), 2),
                }
            )
    Path(args.out).write_text(json.dumps({**measured(), "args": vars(args), "rows": rows, "summary": summary}, indent=1))
    print(f"{'start':<10} {'night':>5} {'NDCG@10':>8} {'spread':>7} {'minutes':>8}")
    for s in summary:
        print(f"{s['start']:<10} {s['night']:>5} {s['NDCG@10']:>8.4f} {s['spread']:>7.4f} {s['minutes']:>8.2f}")


if __name__ == "__main__":
    main()
