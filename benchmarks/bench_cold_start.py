"""New items on a public dataset: every event of a random share of items is removed from
training (the items stay in the catalogue with their attributes), and the users whose test
item is one of them are scored by popularity, by the model without item features, and by the
model whose new items get content-predicted vectors (what the nightly generation does).
Users whose test item is warm are scored with and without those vectors too: the new items
then compete with the warm ones, so this measures what content costs warm users, if anything.

    .venv/bin/python benchmarks/bench_cold_start.py --data ../shared/datasets/Beauty.txt \
        --attributes ../shared/datasets/Beauty_item2attributes.json --out results/cold_start_beauty.json

Protocol as `recsys bench`: leave-one-out, every item ranked, seen items excluded, the epoch
chosen on validation NDCG@10. A new item's events are removed everywhere except where it is a
user's test item, so no new item is ever a training input or target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from recsys_tasks.data.catalogue import read_catalogue
from recsys_tasks.data.prepare import build_sequences, item_popularity, leave_one_out
from recsys_tasks.data.sources import read_interactions
from recsys_tasks.learning.fit import FINETUNE, fit
from recsys_tasks.ops.bench import BENCH_MODEL, BENCH_TRAIN, measured
from recsys_tasks.scoring.content import content_features, fill_cold_items
from recsys_tasks.scoring.evaluation import full_ranking_metrics, model_scorer, popularity_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--attributes", required=True, help="the catalogue: S3-Rec JSON or any items_uri shape")
    parser.add_argument("--new-share", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=BENCH_TRAIN.epochs)
    parser.add_argument("--patience", type=int, default=BENCH_TRAIN.patience)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()

    frame = read_interactions(args.data)
    items = sorted(frame["item_id"].astype(str).unique())
    rng = np.random.default_rng(args.seed)
    new = set(rng.choice(items, size=max(1, round(args.new_share * len(items))), replace=False))
    last = frame.groupby("user_id").tail(1).index
    kept = frame[~frame["item_id"].isin(new) | frame.index.isin(last)]
    seqs = build_sequences(kept, known_items=items)  # every catalogue item has a token, events or not
    split = leave_one_out(seqs, min_length=3)
    test_end = split.train_end + 1
    test_items = seqs.items[test_end[split.eval_users]]  # train_end is an index into seqs.items
    new_tokens = np.asarray([seqs.item_ids[t - 1] in new for t in range(1, seqs.n_items + 1)])
    is_new = new_tokens[test_items - 1]
    logging.info("%d new items; %d of %d evaluated users have a new test item", len(new), is_new.sum(), len(is_new))

    train = dataclasses.replace(BENCH_TRAIN, epochs=args.epochs, patience=args.patience, seed=args.seed)
    fitted = fit(seqs, split, BENCH_MODEL, train, FINETUNE)
    model = fitted.model.eval()
    device = torch.device("cpu")
    popularity = item_popularity(seqs, split)

    def scores(scorer, users):
        with torch.no_grad():
            return {k: round(v, 4) for k, v in full_ranking_metrics(scorer, seqs, users, test_end).items()}

    new_users, warm_users = split.eval_users[is_new], split.eval_users[~is_new]
    results = {"popularity": {"new": scores(popularity_scorer(popularity), new_users)}}
    results["model_without_features"] = {"new": scores(model_scorer(model, seqs, device), new_users),
                                         "warm": scores(model_scorer(model, seqs, device), warm_users)}
    catalogue = read_catalogue(args.attributes)
    features = content_features(seqs.item_ids, catalogue.items, catalogue.attributes)
    counts = np.bincount(
        seqs.items[np.concatenate([np.arange(s, e) for s, e in zip(seqs.offsets[:-1], split.train_end, strict=True)])],
        minlength=seqs.n_items + 1,
    )  # training events only: new items have none
    rows = seqs.n_items + 1
    with torch.no_grad():
        weight = model.item_embedding.weight[:rows].numpy().copy()
        filled = fill_cold_items(weight, counts, features)
        model.item_embedding.weight[:rows] = torch.from_numpy(weight)
    results["model_with_features"] = {"new": scores(model_scorer(model, seqs, device), new_users),
                                      "warm": scores(model_scorer(model, seqs, device), warm_users)}
    out = {
        "data": args.data, "catalogue": args.attributes, "new_share": args.new_share, "seed": args.seed,
        "new_items": len(new), "new_items_filled": int(len(filled)), "users_new_test_item": int(len(new_users)),
        "users_warm_test_item": int(len(warm_users)), "best_epoch": fitted.result.best_epoch,
        "train_seconds": round(fitted.result.seconds, 1), "total_seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**measured(), **out}, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "results"}))
    for name, parts in results.items():
        for group, metrics in parts.items():
            print(f"{name:<24} {group:<5} HR@10 {metrics['HR@10']:.4f}  NDCG@10 {metrics['NDCG@10']:.4f}")


if __name__ == "__main__":
    main()
