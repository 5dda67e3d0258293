"""The SQLite publish against its floor: the same rows written by the driver alone.

    .venv/bin/python benchmarks/bench_sqlite_write.py --users 1000000 --out results/sqlite_write.json

`db.publish_recommendations` on an embedded SQLite file (the run's rows from pandas frames of
250k rows, as the generation shards hand them over, then the pointer switch and retirement),
against the floor: `sqlite3`'s executemany of the same rows, already plain tuples, into a table
of the same shape and primary key, in one transaction. Both start from an empty file; the arms
alternate (`--repeats`), and the best of each is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_tasks import db
from recsys_tasks.config import config_from_env
from recsys_tasks.ops.bench import measured

K = 10


def rows(users: int) -> pd.DataFrame:
    n = users * K
    return pd.DataFrame({
        "user_id": np.repeat([f"user{u}" for u in range(users)], K), "rank": np.tile(np.arange(1, K + 1), users),
        "item_id": [f"item{i % 50_000}" for i in range(n)], "score": np.random.default_rng(0).random(n),
        "model_version": "v-1", "strategy": "model", "variant": "model", "probability": 0.01,
        "because_item_id": "item7", "because_score": 0.5, "reason": "history",
    })


def publish_seconds(frame: pd.DataFrame) -> float:
    url = f"sqlite:///{tempfile.mkdtemp()}/results.db"
    engine = db.make_engine(url)
    tables = db.Tables.from_config(dataclasses.replace(config_from_env({}), db_url=url))
    db.apply_schema(engine, tables)
    parts = [frame.iloc[lo : lo + 250_000] for lo in range(0, len(frame), 250_000)]
    tick = time.perf_counter()
    db.publish_recommendations(engine, tables, "run-1", iter(parts), 5)
    seconds = time.perf_counter() - tick
    engine.dispose()
    return seconds


def floor_seconds(frame: pd.DataFrame) -> float:
    stamp = "2026-12-07 02:00:00.000000"
    records = [("run-1", *r[:5], stamp, *r[5:]) for r in frame.itertuples(index=False, name=None)]
    conn = sqlite3.connect(Path(tempfile.mkdtemp()) / "floor.db", isolation_level=None)
    conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE r (run_id TEXT, user_id TEXT, "
                       "rank INTEGER, item_id TEXT, score REAL, model_version TEXT, generated_at TEXT, strategy TEXT, "
                       "variant TEXT, probability REAL, because_item_id TEXT, because_score REAL, reason TEXT, "
                       "PRIMARY KEY (run_id, user_id, rank))")
    tick = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - tick
    conn.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    stamp = measured()
    frame = rows(args.users)
    publish, floor = [], []
    for _ in range(args.repeats):
        publish.append(publish_seconds(frame))
        floor.append(floor_seconds(frame))
    figures = {**stamp, "rows": len(frame), "publish_seconds": round(min(publish), 2), "floor_seconds": round(min(floor), 2),
               "publish_rows_per_s": round(len(frame) / min(publish)), "floor_rows_per_s": round(len(frame) / min(floor)),
               "publish_vs_floor": round(min(publish) / min(floor), 2), "all_publish": publish, "all_floor": floor}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    print(f"{len(frame):,} rows: publish {figures['publish_rows_per_s']:,} rows/s, the driver alone "
          f"{figures['floor_rows_per_s']:,} rows/s: {figures['publish_vs_floor']}x the floor; saved to {args.out}")


if __name__ == "__main__":
    main()
