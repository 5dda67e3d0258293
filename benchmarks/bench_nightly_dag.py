"""What readers get from the nightly DAG itself, beside what `recsys bench` reports.

    .venv/bin/python benchmarks/bench_nightly_dag.py --data ../shared/datasets/Beauty.txt \
        --out results/nightly_dag_beauty.json

Each user's last item is held out; the rest of the sequence file becomes a CSV of events (one
second apart, ending a day ago). `recsys run` runs the nightly DAG on it exactly as the README
says (its defaults; `--param` adds run params), in a fresh RECSYS_HOME. Then the lists it
published (`recommendations_current`) are scored against the held-out items: HR@10 and
NDCG@10 over the same users as `recsys bench`'s test split (each user's last item, the rest as
history; an item seen before is never in a list, so a repeated target is a miss in both).
Also saved: the run's wall time, its stages' seconds, its status and the peak memory of the run,
and the popularity baseline's NDCG@10 on the same held-out items (the most popular unseen items).

How the night grows with its work: `--synthetic USERS,ITEMS` (e.g. 10000,5000) generates a
synthetic log of that size (`recsys demo-data`'s generator; `--seed`) instead of `--data`:

    .venv/bin/python benchmarks/bench_nightly_dag.py --synthetic 10000,5000 --out results/scale_10k.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from recsys_tasks.ops.bench import measured

REPO = Path(__file__).resolve().parents[1]


def held_out_events(path: str, out: Path) -> dict[str, str]:
    """Write every line but its last item as events to `out` (CSV); return user -> last item."""
    rows, last = [], {}
    start = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(days=1)
    clock = 0
    for line in Path(path).read_text().splitlines():
        user, *items = line.split()
        if len(items) < 2:
            continue
        last[user] = items[-1]
        for item in items[:-1]:
            rows.append((user, item, clock))
            clock += 1
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "second"])
    frame["ts"] = start - pd.to_timedelta(clock - frame["second"], unit="s")
    frame.assign(event_type="view")[["user_id", "item_id", "ts", "event_type"]].to_csv(out, index=False)
    return last


def score(lists: pd.DataFrame, last: dict[str, str], k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k of the published lists against each user's held-out item."""
    lists = lists[lists["rank"] <= k]
    hits = lists.assign(target=lists["user_id"].map(last))
    hits = hits[hits["item_id"] == hits["target"]]
    gains = np.zeros(len(last))
    ranks = dict(zip(hits["user_id"], hits["rank"], strict=True))
    for i, user in enumerate(last):
        if user in ranks:
            gains[i] = 1.0 / np.log2(ranks[user] + 1)
    return {f"HR@{k}": round(float((gains > 0).mean()), 4), f"NDCG@{k}": round(float(gains.mean()), 4),
            "users": len(last), "users_with_a_list": int(lists["user_id"].nunique())}


def synthetic_sequences(users: int, items: int, seed: int, out: Path) -> str:
    """A sequence file (`user item item ...`, in time order) of a synthetic log of that size."""
    from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions

    log = generate_interactions(SyntheticSpec(users=users, items=items, topics=min(200, max(20, items // 250)), seed=seed))
    lines = log.sort_values(["user_id", "ts"], kind="stable").groupby("user_id", sort=False)["item_id"].agg(" ".join)
    out.write_text("".join(f"{user} {seq}\n" for user, seq in lines.items()))
    return str(out)


def popularity_lists(events: Path, last: dict[str, str], k: int = 10) -> pd.DataFrame:
    """The most popular items (events before the held-out ones) each user has not seen, top k."""
    log = pd.read_csv(events, usecols=["user_id", "item_id"], dtype=str)
    ranked = log["item_id"].value_counts().index.tolist()
    seen = log.groupby("user_id")["item_id"].agg(set)
    rows = []
    for user in last:
        mine = seen.get(user, set())
        picks = [i for i in ranked[: k + len(mine)] if i not in mine][:k]
        rows += [(user, r + 1, item) for r, item in enumerate(picks)]
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a sequence file, e.g. ../shared/datasets/Beauty.txt")
    source.add_argument("--synthetic", metavar="USERS,ITEMS", help="a synthetic log of that size instead")
    parser.add_argument("--seed", type=int, default=1, help="of the synthetic log")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="passed to recsys run")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    stamp = measured()  # the code that runs, before anything else can change the checkout
    home = Path(tempfile.mkdtemp(prefix="recsys-nightly-dag-"))
    events = home / "events.csv"
    data = args.data
    if args.synthetic:
        users, items = (int(n) for n in args.synthetic.split(","))
        data = synthetic_sequences(users, items, args.seed, home / "synthetic.txt")
    last = held_out_events(data, events)
    env = {**os.environ, "RECSYS_HOME": str(home), "RECSYS_SOURCE_URI": str(events)}
    for name in ("RECSYS_DB_URL", "RECSYS_ARTIFACT_ROOT", "AIRFLOW_HOME"):
        env.pop(name, None)
    params = [p for pair in args.param for p in ("--param", pair)]
    tick = time.perf_counter()
    run = subprocess.run([str(REPO / ".venv/bin/recsys"), "run", *params], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    print(run.stdout[-3000:], run.stderr[-2000:], sep="\n")
    engine = sa.create_engine(f"sqlite:///{home / 'recsys.db'}")
    with engine.connect() as conn:
        lists = pd.read_sql(sa.text("SELECT user_id, rank, item_id, strategy FROM recommendations_current"), conn)
        runs = pd.read_sql(sa.text("SELECT run_id, status, model_version, message FROM recsys_runs"), conn)
        stages = pd.read_sql(sa.text("SELECT stage, seconds FROM recsys_runs_stages ORDER BY started_at"), conn)
    engine.dispose()
    figures = {
        **stamp, "data": args.data or f"synthetic {args.synthetic} (seed {args.seed})", "params": args.param,
        "exit_code": run.returncode,
        "wall_seconds": round(seconds, 1), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "run": runs.to_dict("records")[-1] if len(runs) else None,
        "stage_seconds": dict(zip(stages["stage"], stages["seconds"].round(1), strict=True)),
        "strategies": lists["strategy"].value_counts().to_dict(),
        "published": score(lists, last),
        "popularity": score(popularity_lists(events, last), last),
        "home": str(home),  # the run's artifacts (models/<version>/model.pt) stay for other benchmarks
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1, default=str) + "\n")
    print(json.dumps({k: figures[k] for k in ("wall_seconds", "peak_rss_mb", "published", "popularity", "stage_seconds")},
                     indent=1))
    sys.exit(0 if run.returncode in (0, 3) else run.returncode)


if __name__ == "__main__":
    main()
