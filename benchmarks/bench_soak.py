"""Soak: many consecutive nightly runs on the embedded default, with a log that grows every day.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_soak.py --runs 20 --out results/soak.json

Each "day" appends the events of new users (5% more users a day by default) to the source
table, then runs the nightly DAG in this process through Airflow (`airflow_adapter.run_dag`) on
SQLite and a local artifact folder under a fresh RECSYS_HOME, then applies artifact retention
(`retention.apply_retention`) unless the pipeline's publish already does. Per run it records
wall seconds, the run's status, rows published, rows left in the results table, bytes on disk
(results database, artifacts, and apart from them the source log and Airflow's own files),
run and model folders, what retention freed, and this process's RSS.

The gate is opened (`gate_min_lift=-1`, `gate_max_regression=1`, `gate_max_churn=1`) so that
every run publishes and storage is measured over published runs; `--shipped-gate` keeps the
defaults. The source log lives in its own SQLite file so that its growth, which retention does
not and must not touch, is reported apart from what the pipeline keeps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recsys_tasks.ops.bench import measured

GATE_OPEN = {"gate_min_lift": -1.0, "gate_max_regression": 1.0, "gate_max_churn": 1.0}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def output_to(log_file: Path):
    """Send this process's stdout/stderr (Airflow's task logs included) to a file meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "ab") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def users_on_day(args: argparse.Namespace, day: int) -> int:
    return round(args.users * (1.0 + args.growth) ** day)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--users", type=int, default=1000, help="users on the first day")
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--growth", type=float, default=0.05, help="daily growth of the user base (and so of events)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pretrain-epochs", type=int, default=1)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--num-shards", type=int, default=2)
    parser.add_argument("--retain-runs", type=int, default=None, help="default: the config's retain_runs")
    parser.add_argument("--shipped-gate", action="store_true", help="keep the gate's defaults (runs may be rejected)")
    parser.add_argument("--home", default=None, help="RECSYS_HOME to fill (default: a fresh temporary folder)")
    parser.add_argument("--out", default="results/soak.json")
    args = parser.parse_args()

    home = Path(args.home or tempfile.mkdtemp(prefix="recsys-soak-")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    for name in ("RECSYS_SOURCE_URI", "RECSYS_DB_URL", "RECSYS_ARTIFACT_ROOT"):
        os.environ.pop(name, None)
    os.environ.update(
        RECSYS_HOME=str(home), AIRFLOW_HOME=str(home / "airflow"), RECSYS_TASK_RETRIES="0",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )

    import sqlalchemy as sa  # after the environment: Airflow reads it at import

    from recsys_tasks import airflow_adapter, db
    from recsys_tasks.config import config_from_env
    from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions
    from recsys_tasks.pipeline import serve
    from recsys_tasks.storage import retention
    from recsys_tasks.storage.artifacts import ArtifactStore

    logging.getLogger("recsys_tasks.storage.retention").setLevel(logging.WARNING)  # the table says what it did
    config = config_from_env()
    retain = args.retain_runs or config.retain_runs
    source_db = home / "source.db"
    source_uri = f"sqlite:///{source_db}?table=interactions"
    pipeline_prunes = "apply_retention" in Path(serve.__file__).read_text()
    print(f"RECSYS_HOME {home}; source {source_uri}; retain_runs {retain}")
    print("retention: " + ("the pipeline's publish applies it" if pipeline_prunes else "applied by this script after each run"))

    pool = generate_interactions(SyntheticSpec(users=users_on_day(args, args.runs - 1), items=args.items, seed=11))
    pool_user = pool["user_id"].str[1:].astype(int)  # "u17" -> 17: day d holds users below users_on_day(d)
    params: dict[str, Any] = {
        "epochs": args.epochs, "pretrain_epochs": args.pretrain_epochs, "top_k": args.top_k,
        "num_shards": args.num_shards, "source_uri": source_uri, **({} if args.shipped_gate else GATE_OPEN),
    }
    source = sa.create_engine(f"sqlite:///{source_db}")
    engine = db.make_engine(config.db_url)
    tables = db.Tables.from_config(config)
    store = ArtifactStore(config.artifact_root)
    rows: list[dict[str, Any]] = []
    freed_total = 0
    header = (
        f"{'run':>3} {'users':>5} {'events':>6} {'status':<10} {'wall s':>6} {'rows':>6} {'table':>6} "
        f"{'db MB':>6} {'art MB':>6} {'total MB':>8} {'runs':>4} {'models':>6} {'freed MB':>8} {'src MB':>6} "
        f"{'af MB':>6} {'RSS MB':>6}"
    )
    print(header)
    for day in range(args.runs):
        new = pool[(pool_user >= (users_on_day(args, day - 1) if day else 0)) & (pool_user < users_on_day(args, day))]
        with source.begin() as conn:  # the application appends the day's events to its log
            new.to_sql("interactions", conn, if_exists="append" if day else "replace", index=False, chunksize=10_000)
        with source.connect() as conn:
            events = conn.exec_driver_sql("SELECT COUNT(*) FROM interactions").scalar()

        started = time.perf_counter()
        with output_to(home / "runs.log"):
            outcome = airflow_adapter.run_dag("recsys_nightly", params)
        wall = time.perf_counter() - started
        record = db.get_run(engine, tables, outcome["run_id"]) or {}
        pruned = {"removed": [], "bytes_freed": 0}
        if not pipeline_prunes:
            pruned = retention.apply_retention(store, engine, tables, retain)
        freed_total += pruned["bytes_freed"]
        with engine.connect() as conn:
            table_rows = conn.exec_driver_sql(f"SELECT COUNT(*) FROM {tables.results}").scalar()
        db_bytes = sum(p.stat().st_size for p in home.glob("recsys.db*"))
        artifact_bytes = folder_bytes(Path(config.artifact_root))
        row = {
            "run": day + 1, "users": users_on_day(args, day), "events": events, "state": outcome["state"],
            "status": record.get("status"), "wall_seconds": round(wall, 1), "rows_published": record.get("rows_written") or 0,
            "results_table_rows": table_rows, "results_db_bytes": db_bytes, "artifact_bytes": artifact_bytes,
            "total_bytes": db_bytes + artifact_bytes, "run_folders": len(store.folders("runs")),
            "model_folders": len(store.folders("models")), "folders_removed": len(pruned["removed"]),
            "bytes_freed": pruned["bytes_freed"], "bytes_freed_total": freed_total,
            "source_bytes": source_db.stat().st_size, "airflow_bytes": folder_bytes(home / "airflow"),
            "rss_mb": round(rss_mb()), "run_id": outcome["run_id"],
        }
        rows.append(row)
        mb = lambda b: b / 1e6  # noqa: E731
        print(
            f"{row['run']:>3} {row['users']:>5} {events:>6} {str(row['status']):<10} {wall:>6.1f} {row['rows_published']:>6} "
            f"{table_rows:>6} {mb(db_bytes):>6.2f} {mb(artifact_bytes):>6.2f} {mb(row['total_bytes']):>8.2f} "
            f"{row['run_folders']:>4} {row['model_folders']:>6} {mb(freed_total):>8.2f} {mb(row['source_bytes']):>6.2f} "
            f"{mb(row['airflow_bytes']):>6.2f} {row['rss_mb']:>6}",
            flush=True,
        )
    engine.dispose()
    source.dispose()

    half = rows[len(rows) // 2 - 1] if len(rows) > 1 else rows[0]
    figures = {
        "settings": {
            "runs": args.runs, "users": args.users, "items": args.items, "growth": args.growth, "epochs": args.epochs,
            "pretrain_epochs": args.pretrain_epochs, "top_k": args.top_k, "num_shards": args.num_shards,
            "retain_runs": retain, "gate": "shipped" if args.shipped_gate else GATE_OPEN,
            "retention": "pipeline" if pipeline_prunes else "bench_soak after each run",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "summary": {
            "published": sum(r["status"] == "published" for r in rows),
            "wall_seconds_total": round(sum(r["wall_seconds"] for r in rows), 1),
            "wall_seconds_median": sorted(r["wall_seconds"] for r in rows)[len(rows) // 2],
            "total_bytes_at_half": half["total_bytes"], "total_bytes_at_end": rows[-1]["total_bytes"],
            "bytes_without_retention_at_end": rows[-1]["total_bytes"] + freed_total,
            "events_growth": round(rows[-1]["events"] / rows[0]["events"], 2),
            "max_run_folders": max(r["run_folders"] for r in rows),
            "rss_mb_first_last": [rows[0]["rss_mb"], rows[-1]["rss_mb"]],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        },
        "runs": rows,
    }
    print(json.dumps(figures["summary"], indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**measured(), **figures}, indent=2) + "\n")
    print(f"saved {args.out}; Airflow's task logs in {home / 'runs.log'}")


if __name__ == "__main__":
    main()
