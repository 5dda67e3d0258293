"""The results database: DDL, the run table, and the atomic publish that readers rely on.

Publishing a run is one transaction: its rows are (re)written, the pointer row behind the
`recommendations_current` view is switched to it, and the transaction commits. A crash or a
kill before COMMIT leaves the previous run in place; re-publishing the same run replaces its
rows. Runs beyond the retention limit are then dropped, in a transaction of their own.

PostgreSQL: the results table is partitioned by run. A run is COPYed into a staging table of
its own, indexed, and attached as its partition in the switch transaction; retiring a run
drops its partition. MVCC lets readers keep reading the old run until COMMIT.
SQLite: batched INSERTs in the switch transaction; WAL lets readers keep reading meanwhile.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from recsys_tasks.companions import FALLBACK_COLUMNS, SIMILAR_COLUMNS
from recsys_tasks.config import PipelineConfig, sql_identifier
from recsys_tasks.errors import StalePublishError
from recsys_tasks.redact import redact
from recsys_tasks.sources import sqlite_file

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
PARTITION_BY = " PARTITION BY LIST (run_id)"
RESULT_COLUMNS = ("run_id", "user_id", "rank", "item_id", "score", "model_version", "generated_at", "strategy", "variant")
# columns that came after the first release, added to older tables in place: name -> DDL type
ADDED_COLUMNS = {"strategy": "VARCHAR(16) NOT NULL DEFAULT 'model'", "variant": "VARCHAR(16) NOT NULL DEFAULT 'model'"}


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
    runs_public: str = "recsys_runs_public"  # what readers may see of the run table
    outcomes: str = "recsys_outcomes"  # how published lists did (outcomes.py)
    # beside the users' lists, published in the same switch (companions.py): the non-personal
    # fallback list and each item's similar items, in tables of their own behind pointer views
    fallback_view: str = "recommendations_fallback"
    similar_view: str = "similar_items_current"

    @property
    def fallback(self) -> str:
        return f"{self.results[:50]}_trending"

    @property
    def similar(self) -> str:
        return f"{self.results[:50]}_similar"

    @classmethod
    def from_config(cls, config: PipelineConfig) -> Tables:
        return cls(
            results=sql_identifier(config.results_table),
            runs=sql_identifier(config.runs_table),
            pointer=sql_identifier(f"{config.results_table}_pointer"),
            view=sql_identifier(config.current_view),
            reader_role=sql_identifier(config.reader_role),
            stages=sql_identifier(f"{config.runs_table}_stages"),
            runs_public=sql_identifier(f"{config.runs_table}_public"),
            outcomes=sql_identifier(config.outcomes_table),
            fallback_view=sql_identifier(config.fallback_view),
            similar_view=sql_identifier(config.similar_view),
        )

    def render(self, sql: str, partition_by: str = "") -> str:
        return sql.format(
            results_table=self.results, runs_table=self.runs, pointer_table=self.pointer,
            current_view=self.view, reader_role=self.reader_role, stages_table=self.stages,
            runs_public=self.runs_public, outcomes_table=self.outcomes, partition_by=partition_by,
            fallback_table=self.fallback, fallback_view=self.fallback_view,
            similar_table=self.similar, similar_view=self.similar_view,
        )

    def partition(self, run_id: str) -> str:
        """PostgreSQL: the name of a run's partition (a hash of the run id: any run id, a valid name)."""
        return f"{self.results[:36]}_run_{hashlib.sha1(run_id.encode()).hexdigest()[:16]}"


def sql_file(name: str, tables: Tables, partition_by: str = "") -> str:
    return tables.render((SQL_DIR / name).read_text(), partition_by)


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


SCHEMA_LOCK_TIMEOUT = "1s"  # DDL waits at most this long for a reader before giving up and retrying
PUBLISH_LOCK_TIMEOUT = "30s"  # the switch transaction waits at most this long for another publisher
RETIRE_LOCK_TIMEOUT = "500ms"  # dropping a retired run's partition queues readers behind it: keep it short


def schema_is_current(engine: sa.Engine, tables: Tables) -> bool:
    """True when every table and view exists with today's columns: no DDL, and no lock, needed."""
    inspector = sa.inspect(engine)
    names = set(inspector.get_table_names()) | set(inspector.get_view_names())
    if not {tables.results, tables.runs, tables.stages, tables.pointer, tables.view, tables.runs_public, tables.outcomes,
            tables.fallback, tables.similar, tables.fallback_view, tables.similar_view} <= names:
        return False
    if engine.dialect.name == "postgresql" and tables.results not in _partitioned_tables(engine):
        return False
    return [c["name"] for c in inspector.get_columns(tables.view)] == list(RESULT_COLUMNS)


def _partitioned_tables(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.exec_driver_sql(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'p' AND n.nspname = current_schema()"
        ).scalars())


def apply_schema(engine: sa.Engine, tables: Tables, attempts: int = 5) -> None:
    """Create tables and the reader views if missing; safe to run any number of times.

    A current schema is left alone (no DDL, so no lock that a reader's open transaction could
    hold up). DDL waits at most SCHEMA_LOCK_TIMEOUT for locks, then retries with backoff, so a
    reader holding a transaction open never queues other readers behind it for long."""
    if schema_is_current(engine, tables):
        return
    for attempt in range(1, attempts + 1):
        try:
            _apply_schema_once(engine, tables)
            return
        except sa.exc.OperationalError as error:
            if engine.dialect.name != "postgresql" or "lock timeout" not in str(error.orig) or attempt == attempts:
                raise
            log.warning("schema change waited %s for a lock held by a reader; retry %d of %d",
                        SCHEMA_LOCK_TIMEOUT, attempt, attempts - 1)
            time.sleep(0.5 * attempt)


def _apply_schema_once(engine: sa.Engine, tables: Tables) -> None:
    postgres = engine.dialect.name == "postgresql"
    create_view = "CREATE OR REPLACE VIEW" if postgres else "CREATE VIEW IF NOT EXISTS"
    with engine.begin() as conn:
        legacy = None
        if postgres:
            # concurrent first publishes would race on CREATE TABLE IF NOT EXISTS
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": tables.results})
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{SCHEMA_LOCK_TIMEOUT}'")
            legacy = _set_aside_unpartitioned_results(conn, tables)
        for statement in _statements(sql_file("schema.sql", tables, PARTITION_BY if postgres else "")):
            conn.execute(sa.text(statement))
        _upgrade_older_schema(conn, tables)
        if legacy:
            conn.exec_driver_sql(f"ALTER TABLE {tables.results} ATTACH PARTITION {legacy} DEFAULT")
            log.info("%s is now partitioned by run; the runs already there stay readable in %s", tables.results, legacy)
        for view, body in ((tables.view, "current_view.sql"), (tables.runs_public, "runs_public_view.sql"),
                           (tables.fallback_view, "fallback_view.sql"), (tables.similar_view, "similar_view.sql")):
            query = "\n".join(line for line in sql_file(body, tables).splitlines() if not line.strip().startswith("--"))
            conn.execute(sa.text(f"{create_view} {view} AS {query}"))
        if postgres:
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('recsys reader role'))")
            for statement in _statements(sql_file("reader_role.sql", tables)):
                conn.exec_driver_sql(statement.replace("%", "%%"))


def _add_missing_columns(conn: sa.Connection, table: str) -> None:
    """Columns that came after the first release (`ADDED_COLUMNS`), added where missing."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(table)}
    for name, ddl in ADDED_COLUMNS.items():
        if name not in present:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}")


def _set_aside_unpartitioned_results(conn: sa.Connection, tables: Tables) -> str | None:
    """PostgreSQL results tables made before runs were partitions: rename the old table so the
    partitioned one can be made; it then becomes the DEFAULT partition, its runs still readable
    and retired as usual."""
    found = sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)")
    if conn.execute(found, {"t": tables.results}).scalar() != "r":
        return None
    legacy = f"{tables.results[:50]}_legacy"
    primary_key = conn.execute(
        sa.text("SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:t) AND contype = 'p'"),
        {"t": tables.results},
    ).scalar()
    conn.exec_driver_sql(f"ALTER TABLE {tables.results} RENAME TO {legacy}")
    if primary_key:  # frees the name `<results>_pkey` for the partitioned table's key
        conn.exec_driver_sql(f'ALTER TABLE {legacy} RENAME CONSTRAINT "{primary_key}" TO {legacy}_pkey')
    _add_missing_columns(conn, legacy)
    return legacy


def _upgrade_older_schema(conn: sa.Connection, tables: Tables) -> None:
    """Bring tables made by earlier versions up to date."""
    _add_missing_columns(conn, tables.results)
    inspector = sa.inspect(conn)
    views = set(inspector.get_view_names())
    if tables.view in views and [c["name"] for c in inspector.get_columns(tables.view)] != list(RESULT_COLUMNS):
        conn.exec_driver_sql(f"DROP VIEW {tables.view}")  # recreated below, in the same transaction


def record_run(engine: sa.Engine, tables: Tables, run_id: str, status: str, **fields: Any) -> None:
    """Insert or update this run's row in the run table (readers see it: credentials are masked)."""
    fields = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
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


def recent_runs(engine: sa.Engine, tables: Tables, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs first, with their metrics decoded."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT * FROM {tables.runs} ORDER BY started_at DESC LIMIT :n"), {"n": limit}
        ).mappings().all()
    return [{**dict(r), "metrics": json.loads(r["metrics"]) if r["metrics"] else {}} for r in rows]


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


def _copy_rows(conn: sa.Connection, table: str, rows: pd.DataFrame, chunk: int = 200_000,
               columns: tuple[str, ...] = RESULT_COLUMNS) -> None:
    """Bulk-load on PostgreSQL with COPY (psycopg 3), fed CSV made by Arrow in chunks."""
    cursor = conn.connection.driver_connection.cursor()
    frame = rows[list(columns)]
    # one publish has one generated_at: format it once rather than once per row
    stamps = frame["generated_at"].unique()
    if len(stamps) == 1:
        frame = frame.assign(generated_at=pd.Timestamp(stamps[0]).isoformat())
    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        for lo in range(0, len(frame), chunk):
            buffer = io.BytesIO()  # Arrow's C++ CSV writer: several times faster than pandas' for this
            pa_csv.write_csv(pa.Table.from_pandas(frame.iloc[lo : lo + chunk], preserve_index=False), buffer, options)
            copy.write(buffer.getvalue())


def _ddl(conn: sa.Connection, statement: str) -> None:
    conn.exec_driver_sql(statement.replace("%", "%%"))  # the driver would read % in a run id as a placeholder


def _load_partition(conn: sa.Connection, tables: Tables, run_id: str, parts: Iterable[pd.DataFrame]) -> int:
    """PostgreSQL: COPY the run into a staging table of its own, index it, and attach it as the
    run's partition (replacing the partition of an earlier publish of the same run).

    Everything up to the attach touches only the staging table, so readers are never blocked
    by the load; the attach itself is a catalogue change (the CHECK constraint spares it a scan).
    """
    partition = tables.partition(run_id)
    staging = f"{partition}_load"
    literal = "'" + run_id.replace("'", "''") + "'"
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": partition})
    _ddl(conn, f"DROP TABLE IF EXISTS {staging}")
    _ddl(conn, f"CREATE TABLE {staging} (LIKE {tables.results} INCLUDING DEFAULTS, CHECK (run_id = {literal}))")
    written = 0
    for rows in parts:  # one shard in memory at a time
        _copy_rows(conn, staging, rows)
        written += len(rows)
    _ddl(conn, f"ALTER TABLE {staging} ADD PRIMARY KEY (run_id, user_id, rank)")  # one sort, not 20M inserts
    _ddl(conn, f"DROP TABLE IF EXISTS {partition}")
    # rows of this run in a pre-partitioning table (the DEFAULT partition), if there is one
    conn.execute(sa.text(f"DELETE FROM {tables.results} WHERE run_id = :r"), {"r": run_id})
    _ddl(conn, f"ALTER TABLE {staging} RENAME TO {partition}")
    _ddl(conn, f"ALTER TABLE {tables.results} ATTACH PARTITION {partition} FOR VALUES IN ({literal})")
    return written


def _insert_rows(conn: sa.Connection, table: str, run_id: str, parts: Iterable[pd.DataFrame], chunk: int = 50_000,
                 columns: tuple[str, ...] = RESULT_COLUMNS) -> int:
    """Replace the run's rows of `table` with batched INSERTs (inside the switch transaction)."""
    conn.execute(sa.text(f"DELETE FROM {table} WHERE run_id = :r"), {"r": run_id})
    statement = sa.text(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    ).bindparams(sa.bindparam("generated_at", type_=sa.DateTime(timezone=True)))
    written = 0
    for rows in parts:
        records = rows[list(columns)].to_dict("records")
        for lo in range(0, len(records), chunk):
            conn.execute(statement, records[lo : lo + chunk])
        written += len(records)
    return written


def _take_publisher_lock(conn: sa.Connection, tables: Tables) -> None:
    """One publisher at a time per reader view, across processes, DAGs and machines: held
    until the switch transaction ends. PostgreSQL: an advisory lock (bounded by lock_timeout);
    SQLite: the database's write lock, taken by a write before anything is read."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{PUBLISH_LOCK_TIMEOUT}'")
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"recsys publish {tables.view}"})
    else:
        conn.execute(sa.text(f"DELETE FROM {tables.pointer} WHERE 0 = 1"))


def _newer_run_shown(conn: sa.Connection, tables: Tables, run_id: str) -> str | None:
    """The run readers see now, when it started after `run_id` did (so must not be replaced)."""
    current = conn.execute(sa.text(f"SELECT run_id FROM {tables.pointer} WHERE view_name = :v"), {"v": tables.view}).scalar()
    if current is None or current == run_id:
        return None
    started = dict(conn.execute(
        sa.text(f"SELECT run_id, started_at FROM {tables.runs} WHERE run_id IN (:a, :b)"), {"a": current, "b": run_id}
    ).all())
    mine, theirs = str(started.get(run_id) or ""), str(started.get(current) or "")
    return current if mine and theirs and theirs > mine else None


def _write_companions(conn: sa.Connection, tables: Tables, run_id: str, companions: dict[str, pd.DataFrame],
                      now: datetime) -> dict[str, int]:
    """The run's fallback list and similar items (companions.py), inside the switch transaction."""
    written = {}
    for name, table, columns in (("fallback", tables.fallback, FALLBACK_COLUMNS), ("similar", tables.similar, SIMILAR_COLUMNS)):
        frame = companions.get(name)
        if frame is None:
            continue
        frame = frame.assign(run_id=run_id, generated_at=now)
        columns = ("run_id", *columns, "generated_at")
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"DELETE FROM {table} WHERE run_id = :r"), {"r": run_id})
            _copy_rows(conn, table, frame, columns=columns)
        else:
            _insert_rows(conn, table, run_id, [frame], columns=columns)
        written[name] = len(frame)
    return written


def publish_recommendations(
    engine: sa.Engine, tables: Tables, run_id: str, rows: pd.DataFrame | Iterable[pd.DataFrame], retain_runs: int,
    on_switch: Callable[[], None] | None = None, companions: dict[str, pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """Write the rows of `run_id` (one frame, or several such as one per shard, read one at a
    time) and switch readers to it in one commit (PostgreSQL: the run's partition is attached
    in a commit before, invisible until then); then retire old runs.

    Publishers are serialised (`_take_publisher_lock`); a run never replaces one that started
    after it (StalePublishError). `on_switch` (e.g. promoting the model in the registry) runs
    under the same lock just before COMMIT: if it fails, readers keep the previous run.
    `companions` ("fallback", "similar": companions.py frames) are written in the switch
    transaction, so their views change run in the same commit as the users' lists."""
    apply_schema(engine, tables)
    postgres = engine.dialect.name == "postgresql"
    now = utcnow()

    def stamped(parts: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for part in parts:
            part = part.assign(run_id=run_id, generated_at=now)
            defaults = {c: "model" for c in ADDED_COLUMNS if c not in part}
            yield part.assign(**defaults) if defaults else part

    parts = stamped([rows] if isinstance(rows, pd.DataFrame) else rows)

    def refuse_if_stale(conn: sa.Connection) -> None:
        if newer := _newer_run_shown(conn, tables, run_id):
            raise StalePublishError(
                f"run {run_id} not published: readers already see run {newer}, which started after it"
            )

    if postgres:
        # The partition is attached and committed before the switch, never in the same commit:
        # a reader's statement may be planned (partition list read) before a commit and run on
        # a snapshot taken after it; had the attach and the pointer switch committed together,
        # such a statement would follow the new pointer to a partition its plan lacks, and see
        # no rows at all. The attached partition stays invisible until the pointer names it.
        with engine.begin() as conn:
            refuse_if_stale(conn)
            written = _load_partition(conn, tables, run_id, parts)
    with engine.begin() as conn:
        _take_publisher_lock(conn, tables)
        try:
            refuse_if_stale(conn)
        except StalePublishError:
            if postgres:
                _drop_unshown_partition(engine, tables, run_id)
            raise
        if not postgres:
            written = _insert_rows(conn, tables.results, run_id, parts)
        extras = _write_companions(conn, tables, run_id, companions or {}, now)
        switch = sa.text(
            f"INSERT INTO {tables.pointer} (view_name, run_id, switched_at) VALUES (:v, :r, :t) "
            "ON CONFLICT (view_name) DO UPDATE SET run_id = excluded.run_id, switched_at = excluded.switched_at"
        ).bindparams(sa.bindparam("t", type_=sa.DateTime(timezone=True)))
        conn.execute(switch, {"v": tables.view, "r": run_id, "t": now})
        if on_switch is not None:
            on_switch()
    log.info("published %d rows of run %s; readers of %s now see it", written, run_id, tables.view)
    # after the switch, in a transaction of its own: dropping a partition queues readers behind
    # it, so it waits at most RETIRE_LOCK_TIMEOUT and otherwise leaves it to the next publish
    try:
        with engine.begin() as conn:
            if postgres:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{RETIRE_LOCK_TIMEOUT}'")
            retired = _retire_old_runs(conn, tables, run_id, retain_runs)
    except sa.exc.OperationalError as error:
        log.warning("old runs not retired this time (the next publish retries): %s", error.orig)
        retired = []
    return {"rows_written": written, "published_at": now.isoformat(), "retired_runs": retired,
            **{f"{name}_rows": n for name, n in extras.items()}}


def _drop_unshown_partition(engine: sa.Engine, tables: Tables, run_id: str) -> None:
    """A stale run's partition, loaded but never shown, is dropped (the next publish would retire it anyway)."""
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{RETIRE_LOCK_TIMEOUT}'")
            _ddl(conn, f"DROP TABLE IF EXISTS {tables.partition(run_id)}")
    except sa.exc.OperationalError as error:
        log.warning("the partition of stale run %s stays until the next publish retires it: %s", run_id, error.orig)


def _runs_present(conn: sa.Connection, tables: Tables) -> dict[str, str | None]:
    """Runs with rows in the results table -> their partition (PostgreSQL), or None where the
    rows share a table with other runs (SQLite, or PostgreSQL's pre-partitioning DEFAULT)."""
    if conn.dialect.name != "postgresql":
        return dict.fromkeys(conn.execute(sa.text(f"SELECT DISTINCT run_id FROM {tables.results}")).scalars())
    present: dict[str, str | None] = {}
    children = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits AS i "
            "JOIN pg_class AS c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": tables.results},
    ).all()
    for name, bound in children:
        if bound == "DEFAULT":
            for run_id in conn.execute(sa.text(f"SELECT DISTINCT run_id FROM {name}")).scalars():
                present.setdefault(run_id, None)
        elif match := re.fullmatch(r"FOR VALUES IN \('(.*)'\)", bound, re.DOTALL):
            present[match.group(1).replace("''", "'")] = name
    return present


def _retire_old_runs(conn: sa.Connection, tables: Tables, current: str, retain_runs: int) -> list[str]:
    """Drop the rows of runs beyond the newest `retain_runs` (the current one always stays)."""
    present = _runs_present(conn, tables)
    published = dict(conn.execute(sa.text(f"SELECT run_id, published_at FROM {tables.runs}")).all())
    newest_first = sorted(present, key=lambda r: (str(published.get(r) or ""), r), reverse=True)
    keep = {current, *[r for r in newest_first if r != current][: max(retain_runs - 1, 0)]}
    retired = [r for r in newest_first if r not in keep]
    for run_id in retired:
        if present[run_id] is not None:
            _ddl(conn, f"DROP TABLE {present[run_id]}")
        else:
            conn.execute(sa.text(f"DELETE FROM {tables.results} WHERE run_id = :r"), {"r": run_id})
        for table in (tables.fallback, tables.similar):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE run_id = :r"), {"r": run_id})
    return retired


def read_current(engine: sa.Engine, tables: Tables, user_id: str | None = None) -> pd.DataFrame:
    """What a downstream application sees (all users, or one user's list)."""
    with engine.connect() as conn:
        if user_id is None:
            return pd.read_sql(sa.text(f"SELECT * FROM {tables.view} ORDER BY user_id, rank"), conn)
        return pd.read_sql(sa.text(sql_file("reader_query.sql", tables)), conn, params={"user_id": user_id})


def read_current_for(
    engine: sa.Engine, tables: Tables, user_ids: list[str], chunk: int = 500,
    columns: tuple[str, ...] = ("user_id", "rank", "item_id"),
) -> pd.DataFrame:
    """The published rows of these users (`columns` of the reader view)."""
    statement = sa.text(f"SELECT {', '.join(columns)} FROM {tables.view} WHERE user_id IN :users").bindparams(
        sa.bindparam("users", expanding=True)
    )
    with engine.connect() as conn:
        parts = [
            pd.read_sql(statement, conn, params={"users": user_ids[lo : lo + chunk]})
            for lo in range(0, len(user_ids), chunk)
        ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))
