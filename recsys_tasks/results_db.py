"""The results database: DDL, the run table, and the atomic publish that readers rely on.

Publishing a run is one transaction: its rows are (re)written, the pointer row behind the
`recommendations_current` view is switched to it, and runs beyond the retention limit are
dropped. A crash or a kill before COMMIT leaves the previous run in place; re-publishing the
same run replaces its rows. SQLite uses WAL so readers keep reading during the switch;
PostgreSQL's MVCC gives readers the same guarantee.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from recsys_tasks.config import PipelineConfig, sql_identifier
from recsys_tasks.sources import sqlite_file

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
RESULT_COLUMNS = ("run_id", "user_id", "rank", "item_id", "score", "model_version", "generated_at", "strategy")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Tables:
    results: str
    runs: str
    pointer: str
    view: str
    reader_role: str = "recsys_reader"
    stages: str = "recsys_runs_stages"

    @classmethod
    def from_config(cls, config: PipelineConfig) -> Tables:
        return cls(
            results=sql_identifier(config.results_table),
            runs=sql_identifier(config.runs_table),
            pointer=sql_identifier(f"{config.results_table}_pointer"),
            view=sql_identifier(config.current_view),
            reader_role=sql_identifier(config.reader_role),
            stages=sql_identifier(f"{config.runs_table}_stages"),
        )

    def render(self, sql: str) -> str:
        return sql.format(
            results_table=self.results, runs_table=self.runs, pointer_table=self.pointer,
            current_view=self.view, reader_role=self.reader_role, stages_table=self.stages,
        )


def sql_file(name: str, tables: Tables) -> str:
    return tables.render((SQL_DIR / name).read_text())


def make_engine(db_url: str) -> sa.Engine:
    if (db_file := sqlite_file(db_url)) is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(db_url)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers see the old run while a publish commits
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def _statements(script: str) -> list[str]:
    """Split a SQL script on semicolons, keeping `$$ ... $$` bodies (DO blocks) whole."""
    without_comments = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    statements, current, in_body = [], [], False
    for piece in without_comments.split("$$"):
        if in_body:
            current.append(f"$${piece}$$")
        else:
            *complete, rest = piece.split(";")
            for part in complete:
                statements.append("".join(current) + part)
                current = []
            current.append(rest)
        in_body = not in_body
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def apply_schema(engine: sa.Engine, tables: Tables) -> None:
    """Create tables and the reader view if missing; safe to run any number of times."""
    view_body = "\n".join(
        line for line in sql_file("current_view.sql", tables).splitlines() if not line.strip().startswith("--")
    )
    create_view = "CREATE OR REPLACE VIEW" if engine.dialect.name == "postgresql" else "CREATE VIEW IF NOT EXISTS"
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # concurrent first publishes would race on CREATE TABLE IF NOT EXISTS
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": tables.results})
        for statement in _statements(sql_file("schema.sql", tables)):
            conn.execute(sa.text(statement))
        _upgrade_older_schema(conn, tables)
        conn.execute(sa.text(f"{create_view} {tables.view} AS {view_body}"))
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('recsys reader role'))")
            for statement in _statements(sql_file("reader_role.sql", tables)):
                conn.exec_driver_sql(statement.replace("%", "%%"))


def _upgrade_older_schema(conn: sa.Connection, tables: Tables) -> None:
    """Bring tables made by earlier versions up to date (the `strategy` column came later)."""
    inspector = sa.inspect(conn)
    if "strategy" not in {c["name"] for c in inspector.get_columns(tables.results)}:
        conn.exec_driver_sql(f"ALTER TABLE {tables.results} ADD COLUMN strategy VARCHAR(16) NOT NULL DEFAULT 'model'")
    views = set(inspector.get_view_names())
    if tables.view in views and [c["name"] for c in inspector.get_columns(tables.view)] != list(RESULT_COLUMNS):
        conn.exec_driver_sql(f"DROP VIEW {tables.view}")  # recreated below, in the same transaction


def record_run(engine: sa.Engine, tables: Tables, run_id: str, status: str, **fields: Any) -> None:
    """Insert or update this run's row in the run table."""
    if "metrics" in fields and not isinstance(fields["metrics"], (str, type(None))):
        fields["metrics"] = json.dumps(fields["metrics"], sort_keys=True)
    now = utcnow()
    values = {"run_id": run_id, "status": status, "updated_at": now, **fields}
    insert_values = {"started_at": now, **values}
    columns = ", ".join(insert_values)
    placeholders = ", ".join(f":{c}" for c in insert_values)
    updates = ", ".join(f"{c} = excluded.{c}" for c in values if c != "run_id")
    statement = sa.text(
        f"INSERT INTO {tables.runs} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT (run_id) DO UPDATE SET {updates}"
    ).bindparams(*_time_params(insert_values))
    with engine.begin() as conn:
        conn.execute(statement, insert_values)


def _time_params(values: dict[str, Any]) -> list[sa.BindParameter]:
    return [sa.bindparam(k, type_=sa.DateTime(timezone=True)) for k, v in values.items() if isinstance(v, datetime)]


def record_stage(
    engine: sa.Engine, tables: Tables, run_id: str, stage: str, status: str, started_at: datetime, seconds: float | None
) -> None:
    statement = sa.text(
        f"INSERT INTO {tables.stages} (run_id, stage, status, started_at, seconds) VALUES (:r, :s, :st, :t, :sec) "
        "ON CONFLICT (run_id, stage) DO UPDATE SET status = excluded.status, started_at = excluded.started_at, "
        "seconds = excluded.seconds"
    ).bindparams(sa.bindparam("t", type_=sa.DateTime(timezone=True)))
    with engine.begin() as conn:
        conn.execute(statement, {"r": run_id, "s": stage, "st": status, "t": started_at, "sec": seconds})


def stage_timings(engine: sa.Engine, tables: Tables, run_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT stage, status, seconds FROM {tables.stages} WHERE run_id = :r ORDER BY started_at"), {"r": run_id}
        ).mappings().all()
    return [dict(r) for r in rows]


def get_run(engine: sa.Engine, tables: Tables, run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT * FROM {tables.runs} WHERE run_id = :r"), {"r": run_id}).mappings().first()
    if row is None:
        return None
    out = dict(row)
    out["metrics"] = json.loads(out["metrics"]) if out.get("metrics") else {}
    return out


def metric_history(engine: sa.Engine, tables: Tables, metric: str, limit: int = 30) -> list[dict[str, Any]]:
    """The chosen metric of the candidate (and popularity) for recent evaluated runs, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT run_id, status, model_version, metrics, updated_at FROM {tables.runs} "
                "WHERE metrics IS NOT NULL ORDER BY updated_at DESC LIMIT :n"
            ),
            {"n": limit},
        ).mappings().all()
    history = []
    for row in reversed(rows):
        metrics = json.loads(row["metrics"])
        if metric in metrics.get("model", {}):
            history.append({
                "run_id": row["run_id"], "status": row["status"], "model_version": row["model_version"],
                "model": metrics["model"][metric], "popularity": metrics.get("popularity", {}).get(metric),
            })
    return history


def current_run_id(engine: sa.Engine, tables: Tables) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(f"SELECT run_id FROM {tables.pointer} WHERE view_name = :v"), {"v": tables.view}
        ).scalar()


def _copy_rows(conn: sa.Connection, tables: Tables, rows: pd.DataFrame, chunk: int = 200_000) -> None:
    """Bulk-load on PostgreSQL with COPY (psycopg 3), fed CSV made by Arrow in chunks."""
    cursor = conn.connection.driver_connection.cursor()
    frame = rows[list(RESULT_COLUMNS)]
    # one publish has one generated_at: format it once rather than once per row
    stamps = frame["generated_at"].unique()
    if len(stamps) == 1:
        frame = frame.assign(generated_at=pd.Timestamp(stamps[0]).isoformat())
    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    with cursor.copy(f"COPY {tables.results} ({', '.join(RESULT_COLUMNS)}) FROM STDIN (FORMAT csv)") as copy:
        for lo in range(0, len(frame), chunk):
            buffer = io.BytesIO()  # Arrow's C++ CSV writer: several times faster than pandas' for this
            pa_csv.write_csv(pa.Table.from_pandas(frame.iloc[lo : lo + chunk], preserve_index=False), buffer, options)
            copy.write(buffer.getvalue())


def _insert_rows(conn: sa.Connection, tables: Tables, rows: pd.DataFrame, chunk: int = 50_000) -> None:
    statement = sa.text(
        f"INSERT INTO {tables.results} ({', '.join(RESULT_COLUMNS)}) "
        f"VALUES ({', '.join(':' + c for c in RESULT_COLUMNS)})"
    ).bindparams(sa.bindparam("generated_at", type_=sa.DateTime(timezone=True)))
    records = rows[list(RESULT_COLUMNS)].to_dict("records")
    for lo in range(0, len(records), chunk):
        conn.execute(statement, records[lo : lo + chunk])


def publish_recommendations(
    engine: sa.Engine, tables: Tables, run_id: str, rows: pd.DataFrame, retain_runs: int
) -> dict[str, Any]:
    """Write `rows` for `run_id` and switch readers to it, all in one transaction."""
    apply_schema(engine, tables)
    now = utcnow()
    rows = rows.assign(run_id=run_id, generated_at=now)
    if "strategy" not in rows:
        rows = rows.assign(strategy="model")
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {tables.results} WHERE run_id = :r"), {"r": run_id})
        if engine.dialect.name == "postgresql":
            _copy_rows(conn, tables, rows)
        else:
            _insert_rows(conn, tables, rows)
        switch = sa.text(
            f"INSERT INTO {tables.pointer} (view_name, run_id, switched_at) VALUES (:v, :r, :t) "
            "ON CONFLICT (view_name) DO UPDATE SET run_id = excluded.run_id, switched_at = excluded.switched_at"
        ).bindparams(sa.bindparam("t", type_=sa.DateTime(timezone=True)))
        conn.execute(switch, {"v": tables.view, "r": run_id, "t": now})
        retired = _retire_old_runs(conn, tables, run_id, retain_runs)
    log.info("published %d rows of run %s; readers of %s now see it", len(rows), run_id, tables.view)
    return {"rows_written": len(rows), "published_at": now.isoformat(), "retired_runs": retired}


def _retire_old_runs(conn: sa.Connection, tables: Tables, current: str, retain_runs: int) -> list[str]:
    """Drop the rows of runs beyond the newest `retain_runs` (the current one always stays)."""
    present = conn.execute(
        sa.text(
            f"SELECT r.run_id FROM (SELECT DISTINCT run_id FROM {tables.results}) AS r "
            f"LEFT JOIN {tables.runs} AS s ON s.run_id = r.run_id "
            "ORDER BY s.published_at DESC, r.run_id DESC"
        )
    ).scalars().all()
    keep = {current, *[r for r in present if r != current][: max(retain_runs - 1, 0)]}
    retired = [r for r in present if r not in keep]
    for run_id in retired:
        conn.execute(sa.text(f"DELETE FROM {tables.results} WHERE run_id = :r"), {"r": run_id})
    return retired


def read_current(engine: sa.Engine, tables: Tables, user_id: str | None = None) -> pd.DataFrame:
    """What a downstream application sees (all users, or one user's list)."""
    with engine.connect() as conn:
        if user_id is None:
            return pd.read_sql(sa.text(f"SELECT * FROM {tables.view} ORDER BY user_id, rank"), conn)
        return pd.read_sql(sa.text(sql_file("reader_query.sql", tables)), conn, params={"user_id": user_id})
