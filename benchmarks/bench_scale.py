"""A night at scale: the nightly DAG on a synthetic log, a cold first night then a warm second one.

    .venv/bin/python benchmarks/bench_scale.py --size 100000,20000 --out results/scale_100k.json
    .venv/bin/python benchmarks/bench_scale.py --size 1000000,100000 --out results/scale_1m.json

The log comes from `recsys demo-data`'s generator (`--seed`). Each user's last event is held out
for scoring; for 10% of users (`--movers`) the event before it is held back too, as "today's
events", which the second night gets (an hour after the first night's data ends). Both nights run
`recsys run` as the README says, in one fresh RECSYS_HOME (SQLite, local artifacts): the first
with the defaults (`--param`), the second with `--warm-param` too (default `lists=changed`: a
night that makes only the lists that can have changed and trains on what changed). After each,
the published lists are scored against the held-out events (NDCG@10, HR@10; the most popular
unseen items beside them), with the night's wall time, its stages' seconds, its peak RSS and
the rows published.

The floor is measured in the same run: a bare `torch.topk(U @ I.T)` over `--floor-users`
random users (d = 64, batches of 1,024) against the catalogue, scaled to every user.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
import torch
from bench_nightly_dag import popularity_lists, score, synthetic_sequences

from recsys_tasks.ops.bench import measured

REPO = Path(__file__).resolve().parents[1]
# runs the night and reports the largest resident set of it and its children (one night at a time)
PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
        "print(f'peak_rss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr); sys.exit(code)")


def split_log(sequences: str, movers: float, seed: int, home: Path) -> tuple[Path, pd.DataFrame, dict[str, str]]:
    """The first night's events (CSV), today's events for the movers, and user -> held-out item."""
    rows, last, today = [], {}, []
    rng = np.random.default_rng(seed)
    for line in Path(sequences).read_text().splitlines():
        user, *items = line.split()
        if len(items) < 3:
            continue
        last[user] = items[-1]
        history = items[:-1]
        if rng.random() < movers:
            today.append((user, history[-1]))
            history = history[:-1]
        rows += [(user, item) for item in history]
    end = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(days=1)
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    frame["ts"] = end - pd.to_timedelta(np.arange(len(frame))[::-1], unit="s")
    events = home / "events.csv"
    frame.assign(event_type="view").to_csv(events, index=False)
    new = pd.DataFrame(today, columns=["user_id", "item_id"]).assign(ts=end + pd.Timedelta(hours=1), event_type="view")
    return events, new, last


def floor_seconds(users: int, items: int, sample: int, d: int = 64, k: int = 10) -> float:
    """Bare matmul + top-K for `sample` users against `items`, scaled to `users`."""
    catalogue = torch.randn(items, d)
    sample = min(sample, users)
    tick = time.perf_counter()
    with torch.no_grad():
        for lo in range(0, sample, 1024):
            torch.topk(torch.randn(min(1024, sample - lo), d) @ catalogue.T, k, dim=1)
    return (time.perf_counter() - tick) * users / sample


def night(home: Path, events: Path, params: list[str], last: dict[str, str], label: str) -> dict:
    env = {**os.environ, "RECSYS_HOME": str(home), "RECSYS_SOURCE_URI": str(events)}
    for name in ("RECSYS_DB_URL", "RECSYS_ARTIFACT_ROOT", "AIRFLOW_HOME"):
        env.pop(name, None)
    tick = time.perf_counter()
    command = [str(REPO / ".venv/bin/recsys"), "run", *[p for pair in params for p in ("--param", pair)]]
    run = subprocess.run([sys.executable, "-c", PEAK, *command], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tick
    peak_kb = int(run.stderr.rsplit("peak_rss_kb=", 1)[-1].strip() or 0) if "peak_rss_kb=" in run.stderr else None
    print(f"{label}: exit {run.returncode} after {seconds / 60:.1f} min\n{run.stderr[-1500:]}", flush=True)
    engine = sa.create_engine(f"sqlite:///{home / 'recsys.db'}")
    with engine.connect() as conn:
        lists = pd.read_sql(sa.text("SELECT user_id, rank, item_id, strategy FROM recommendations_current"), conn)
        runs = pd.read_sql(sa.text("SELECT run_id, status, model_version, rows_written, users, message "
                                   "FROM recsys_runs ORDER BY started_at"), conn)
        record = runs.to_dict("records")[-1]
        stages = pd.read_sql(sa.text("SELECT stage, seconds FROM recsys_runs_stages WHERE run_id = :r ORDER BY started_at"),
                             conn, params={"r": record["run_id"]})
    engine.dispose()
    return {"exit_code": run.returncode, "wall_seconds": round(seconds, 1), "run": record,
            "peak_rss_mb": round(peak_kb / 1024) if peak_kb else None,
            "stage_seconds": dict(zip(stages["stage"], stages["seconds"].round(1), strict=True)),
            "published": score(lists, last)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", required=True, metavar="USERS,ITEMS")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--movers", type=float, default=0.1, help="share of users with events on the second day")
    parser.add_argument("--floor-users", type=int, default=50_000)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="both nights")
    parser.add_argument("--warm-param", action="append", default=None, metavar="KEY=VALUE",
                        help="the second night too (default: lists=changed)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    stamp = measured()
    users, items = (int(n) for n in args.size.split(","))
    home = Path(tempfile.mkdtemp(prefix="recsys-scale-"))
    events, today, last = split_log(synthetic_sequences(users, items, args.seed, home / "synthetic.txt"),
                                    args.movers, args.seed, home)
    floor = floor_seconds(len(last), items, args.floor_users)
    print(f"{len(last)} users, {items} items: floor (bare matmul + top-K for every user) {floor / 60:.1f} min", flush=True)
    figures = {**stamp, "size": args.size, "seed": args.seed, "users": len(last), "items": items,
               "floor_seconds": round(floor, 1), "popularity": score(popularity_lists(events, last), last)}
    figures["cold"] = night(home, events, args.param, last, "cold first night")
    pd.concat([pd.read_csv(events), today.assign(ts=today["ts"].astype(str))]).to_csv(events, index=False)
    warm = args.param + (args.warm_param if args.warm_param is not None else ["lists=changed"])
    figures["warm"] = {**night(home, events, warm, last, "warm second night"), "params": warm,
                       "users_with_new_events": len(today)}
    for name in ("cold", "warm"):
        figures[name]["vs_floor"] = round(figures[name]["wall_seconds"] / floor, 2)
    figures["warm_vs_cold_time"] = round(figures["warm"]["wall_seconds"] / figures["cold"]["wall_seconds"], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1, default=str) + "\n")
    print(json.dumps({k: figures[k] for k in ("floor_seconds", "popularity", "warm_vs_cold_time")}, indent=1))
    for name in ("cold", "warm"):
        f = figures[name]
        print(f"{name}: {f['wall_seconds'] / 60:.1f} min ({f['vs_floor']}x the floor), NDCG@10 {f['published']['NDCG@10']} "
              f"(popularity {figures['popularity']['NDCG@10']}), peak RSS {f['peak_rss_mb']} MB, "
              f"{f['run']['rows_written']} rows; stages {f['stage_seconds']}")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
