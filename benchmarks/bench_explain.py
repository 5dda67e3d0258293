"""Is the reason right? Each published row names the history item nearest the recommended one
(`scoring.explain`); this checks that choice against a leave-one-out of the history.

    .venv/bin/python benchmarks/bench_explain.py --data ../shared/datasets/Beauty.txt \
        --model /tmp/recsys-nightly-dag-XXXX/artifacts/models/<version>/model.pt --out results/explain_beauty.json

`--model`: a checkpoint the nightly trained on that data (`benchmarks/bench_nightly_dag.py`
leaves its RECSYS_HOME in place). For every user with 3 or more events (or a seeded sample:
`--users N`), each sequence without its last item (which the nightly never saw), the model's
top-10 (history excluded) is computed; then
each history item (of the last 50) is removed in turn and every listed item's new rank noted.
For each row: the item whose removal drops the recommendation most is the leave-one-out
reason. Reported per attribution (nearest in item space, as shipped; the most recent item; a
random history item): the share of rows whose named item is a leave-one-out reason (ties
count), and the mean rank drop when the named item is removed. The model is scored alone:
the transition prior, which only the last item drives, would make the most recent item the
reason by construction.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from recsys_tasks.data.prepare import Sequences, history_positions
from recsys_tasks.learning.model import SequenceEncoder
from recsys_tasks.ops.bench import measured
from recsys_tasks.scoring.evaluation import model_scorer
from recsys_tasks.scoring.explain import WINDOW, nearest_history_items, unit_rows


def sequences(path: str, item_ids: list[str]) -> Sequences:
    """The file's users, each without the last item, in the model's vocabulary (unknown items dropped)."""
    token = {item: t for t, item in enumerate(item_ids, start=1)}
    users, offsets, items = [], [0], []
    for line in Path(path).read_text().splitlines():
        user, *seq = line.split()
        kept = [token[i] for i in seq[:-1] if i in token][-WINDOW:]
        if len(kept) >= 3:
            users.append(user)
            items += kept
            offsets.append(len(items))
    return Sequences(user_ids=users, item_ids=item_ids, offsets=np.asarray(offsets), items=np.asarray(items, dtype=np.int64))


def ranks_of(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each row's targets (B, K) among that row's finite scores."""
    picked = scores.gather(1, targets)
    return (scores[:, None, :] > picked[:, :, None]).sum(dim=2) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True, help="a nightly checkpoint (models/<version>/model.pt)")
    parser.add_argument("--users", type=int, default=0, help="a seeded sample of this many users (0: every user)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--group", type=int, default=64, help="users scored together")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    stamp, started = measured(), time.perf_counter()
    checkpoint = torch.load(args.model, map_location="cpu", weights_only=False)
    model = SequenceEncoder.from_checkpoint(checkpoint).eval()
    seqs = sequences(args.data, checkpoint["item_ids"])
    rng = np.random.default_rng(args.seed)
    sample = (np.sort(rng.choice(seqs.n_users, min(args.users, seqs.n_users), replace=False)) if args.users
              else np.arange(seqs.n_users))
    score = model_scorer(model, seqs, torch.device("cpu"))
    units = unit_rows(model.item_embedding.weight[1 : seqs.n_items + 1].detach().float().numpy())

    hits = {"nearest": 0, "last": 0, "random": 0}
    drops: dict[str, list[float]] = {"nearest": [], "last": [], "random": [], "best": []}
    rows = 0
    for lo in range(0, len(sample), args.group):  # a group of users, and every variant of theirs, per model call
        users = sample[lo : lo + args.group]
        starts, ends = seqs.offsets[users], seqs.offsets[users + 1]
        scores = score(users, starts, ends).clone()
        rows_h, positions = history_positions(starts, ends)
        scores[torch.as_tensor(rows_h), torch.as_tensor(seqs.items[positions])] = float("-inf")
        scores[:, 0] = float("-inf")
        top = torch.topk(scores, args.k, dim=1).indices  # (G, K)
        before = ranks_of(scores, top)  # (G, K): 1..K
        # every leave-one-out variant of each history: (owner, removed position)
        lengths = ends - starts
        owner = np.repeat(np.arange(len(users)), lengths)
        flat = np.concatenate([np.delete(seqs.items[a:b], j) for a, b, n in zip(starts, ends, lengths, strict=True)
                               for j in range(n)])
        v_ends = np.cumsum(lengths[owner] - 1)
        probe = Sequences(user_ids=[str(j) for j in range(len(owner))], item_ids=seqs.item_ids,
                          offsets=np.r_[0, v_ends], items=flat)
        v_starts = v_ends - (lengths[owner] - 1)
        removed = model_scorer(model, probe, torch.device("cpu"))(np.arange(len(owner)), v_starts, v_ends).clone()
        rows_v, positions_v = history_positions(starts[owner], ends[owner])  # the same exclusions as the list had
        removed[torch.as_tensor(rows_v), torch.as_tensor(seqs.items[positions_v])] = float("-inf")
        removed[:, 0] = float("-inf")
        after = ranks_of(removed, top[torch.as_tensor(owner)])  # (V, K)
        drop = (after - before[torch.as_tensor(owner)]).numpy()
        because, _ = nearest_history_items(units, seqs, np.repeat(users, args.k), top.reshape(-1).numpy())
        because = because.reshape(len(users), args.k)
        for g in range(len(users)):
            mine = np.flatnonzero(owner == g)
            history = seqs.items[starts[g] : ends[g]]
            d = drop[mine]  # (L, K)
            nearest_at = np.array([np.flatnonzero(history == b)[-1] for b in because[g]])
            choices = {"nearest": nearest_at, "last": np.full(args.k, len(history) - 1),
                       "random": rng.integers(0, len(history), size=args.k)}
            best = d.max(axis=0)
            for name, at in choices.items():
                named = d[at, np.arange(args.k)]
                hits[name] += int((named == best).sum())
                drops[name] += named.tolist()
            drops["best"] += best.tolist()
            rows += args.k

    figures = {
        **stamp, "data": args.data, "model": args.model, "users": int(len(sample)), "rows": rows, "k": args.k,
        "window": WINDOW, "seconds": round(time.perf_counter() - started, 1),
        "share_of_rows_naming_a_leave_one_out_reason": {n: round(h / rows, 4) for n, h in hits.items()},
        "mean_rank_drop_when_the_named_item_is_removed": {n: round(float(np.mean(d)), 2) for n, d in drops.items()},
        "median_rank_drop_when_the_named_item_is_removed": {n: float(np.median(d)) for n, d in drops.items()},
        "mean_history_length": round(float(np.mean(np.diff(seqs.offsets)[sample])), 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps({k: figures[k] for k in list(figures)[-5:]}, indent=1))


if __name__ == "__main__":
    main()
