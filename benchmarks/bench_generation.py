"""Nightly generation and writeback at scale, each beside its ceiling, in one run.

    .venv/bin/python benchmarks/bench_generation.py --sizes 100000x10000,1000000x100000 \
        --out results/generation.json

For each USERSxITEMS case, on synthetic embeddings (D=64) and synthetic histories:
(a) generation: `inference.top_k_for_users` (the code the DAG runs: batches, seen-item
    exclusion, ids, fallback flag) vs a bare `torch.topk(U @ I.T)` loop over the same tensors;
(b) writeback: `db.publish_recommendations` into PostgreSQL (COPY, view switch) vs
    `psql \\copy` of the same rows from a CSV file;
(c) peak memory: RSS above the baseline while generating, against the size of one batch of
    scores and of the users x items matrix that is never built.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import sqlalchemy as sa
import torch

from recsys_tasks import db
from recsys_tasks.clock import utcnow
from recsys_tasks.config import config_from_env
from recsys_tasks.data.prepare import Sequences
from recsys_tasks.ops.bench import measured
from recsys_tasks.scoring.inference import embedding_scorer, top_k_for_users


class PeakRss:
    """Samples this process's RSS in a thread; `peak_mb` is the most seen above the start."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round((self.peak - self.start) / 2**20, 1)


def synthetic_case(users: int, items: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = np.minimum(1 + rng.geometric(0.1, size=users), 50)  # ~10 seen items per user
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    seqs = Sequences(
        user_ids=[f"u{u}" for u in range(users)], item_ids=[f"i{i}" for i in range(items)],
        offsets=offsets, items=rng.integers(1, items + 1, size=int(offsets[-1])),
    )
    gen = torch.Generator().manual_seed(seed)
    user_vectors = torch.randn(users, dim, generator=gen)
    item_vectors = torch.randn(items + 1, dim, generator=gen)  # row 0 is padding
    return seqs, user_vectors, item_vectors


def bare_ceiling(user_vectors: torch.Tensor, item_vectors: torch.Tensor, k: int, batch: int) -> float:
    started = time.perf_counter()
    for lo in range(0, len(user_vectors), batch):
        torch.topk(user_vectors[lo : lo + batch] @ item_vectors.T, k, dim=1)
    return time.perf_counter() - started


def writeback(frame, pg_url: str, run_id: str) -> tuple[float, float]:
    """(seconds for our publish, seconds for psql \\copy of the same rows), fresh schemas each."""
    schema = f"bench_{os.getpid()}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = f"{pg_url}?options=-csearch_path%3D{schema}"
    config = dataclasses.replace(config_from_env({}), db_url=url)
    engine = db.make_engine(url)
    tables = db.Tables.from_config(config)
    try:
        db.apply_schema(engine, tables)
        started = time.perf_counter()
        db.publish_recommendations(engine, tables, run_id, frame, retain_runs=5)
        ours = time.perf_counter() - started
        rows = frame.assign(run_id=run_id, generated_at=utcnow(), variant="model")[list(db.RESULT_COLUMNS)]
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as handle:
            rows.to_csv(handle, index=False, header=False)
            path = handle.name
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {schema}.ceiling (LIKE {schema}.{tables.results} INCLUDING ALL)")
        parsed = sa.engine.make_url(pg_url)
        command = [
            "psql", "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres",
            "-d", parsed.database, "-v", "ON_ERROR_STOP=1", "-c",
            f"\\copy {schema}.ceiling ({', '.join(db.RESULT_COLUMNS)}) FROM '{path}' CSV",
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        ceiling = time.perf_counter() - started
        os.unlink(path)
        return ours, ceiling
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


def run_case(users: int, items: int, k: int, dim: int, batch: int, pg_url: str | None) -> dict:
    seqs, user_vectors, item_vectors = synthetic_case(users, items, dim)
    torch.set_num_threads(os.cpu_count() or 1)
    with PeakRss() as memory:
        started = time.perf_counter()
        frame = top_k_for_users(embedding_scorer(user_vectors, item_vectors), seqs, np.arange(users), k, batch_size=batch)
        ours = time.perf_counter() - started
    frame["model_version"] = "bench"
    bare = bare_ceiling(user_vectors, item_vectors, k, batch)
    figures = {
        "users": users, "items": items, "k": k, "dim": dim, "batch_users": batch, "rows": len(frame),
        "generation_seconds": round(ours, 2), "bare_matmul_topk_seconds": round(bare, 2),
        "generation_vs_bare": round(bare / ours, 3), "generation_users_per_second": round(users / ours),
        "generation_peak_rss_above_start_mb": memory.peak_mb,
        "one_batch_of_scores_mb": round(batch * (items + 1) * 4 / 2**20, 1),
        "output_rows_mb": round(frame.memory_usage(deep=False).sum() / 2**20, 1),
        "full_score_matrix_never_built_mb": round(users * (items + 1) * 4 / 2**20),
    }
    if pg_url:
        ours_wb, ceiling = writeback(frame, pg_url, f"bench-{users}x{items}")
        figures.update(
            writeback_seconds=round(ours_wb, 2), psql_copy_seconds=round(ceiling, 2),
            writeback_vs_psql_copy=round(ceiling / ours_wb, 3), writeback_rows_per_second=round(len(frame) / ours_wb),
        )
    print(json.dumps(figures), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000x10000,100000x10000,1000000x100000", help="USERSxITEMS,...")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test", help="'' to skip writeback")
    parser.add_argument("--out", default="results/generation.json")
    args = parser.parse_args()
    cases = []
    for size in args.sizes.split(","):
        users, items = (int(x) for x in size.lower().split("x"))
        cases.append(run_case(users, items, args.k, args.dim, args.batch, args.pg_url or None))
    out = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cases": cases}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**measured(), **out}, indent=2) + "\n")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
