"""The atomic publish readers rely on, and the retirement of old runs.

Publishing a run switches the pointer row behind `recommendations_current` to it in one
commit; a crash or a kill before COMMIT leaves the previous run in place, and re-publishing
the same run replaces its rows. Runs beyond the retention limit are then dropped, in a
transaction of their own.

PostgreSQL: the results table is partitioned by run. A run is COPYed into a staging table of
its own, indexed, and attached as its partition in a commit of its own just before the switch
(why: `publish_recommendations`); retiring a run drops its partition. MVCC lets readers keep
reading the old run until the switch commits.
SQLite: batched INSERTs in the switch transaction; WAL lets readers keep reading meanwhile.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from recsys_tasks.clock import utcnow
from recsys_tasks.db.runs import pointer_run
from recsys_tasks.db.schema import apply_schema
from recsys_tasks.db.tables import (
    ADDED_COLUMNS,
    ADDED_DEFAULTS,
    FALLBACK_COLUMNS,
    ITEM_COLUMNS,
    RESULT_COLUMNS,
    SIMILAR_COLUMNS,
    Tables,
    is_postgres,
)
from recsys_tasks.errors import PublishError, StalePublishError

log = logging.getLogger(__name__)

PUBLISH_LOCK_TIMEOUT = "30s"  # the switch transaction waits at most this long for another publisher
RETIRE_LOCK_TIMEOUT = "500ms"  # dropping a retired run's partition queues readers behind it: keep it short
PLANNED_BEFORE_ATTACH_WAIT_S = 5.0  # the switch waits at most this long for statements planned before the attach


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


def _carry_over(conn: sa.Connection, tables: Tables, run_id: str, target: str, carry_from: str) -> tuple[int, int]:
    """Copy into `target` the rows of run `carry_from` for every user `target` has no list for
    yet, as rows of `run_id` (their model version, reason and generated_at kept: that list was
    made then); (rows, users) carried. A `lists=changed` night publishes its new lists plus
    these, one complete set."""
    others = ", ".join(c for c in RESULT_COLUMNS if c != "run_id")
    kept = (f"FROM {tables.results} AS old WHERE old.run_id = :prev AND NOT EXISTS "
            f"(SELECT 1 FROM {target} AS new WHERE new.run_id = :run AND new.user_id = old.user_id)")
    values = {"run": run_id, "prev": carry_from}
    users = conn.execute(sa.text(f"SELECT COUNT(DISTINCT old.user_id) {kept}"), values).scalar()
    # the selected run id is a parameter of its own: PostgreSQL deduces one type per parameter
    rows = conn.execute(sa.text(f"INSERT INTO {target} (run_id, {others}) SELECT :as_run, {others} {kept}"),
                        {**values, "as_run": run_id}).rowcount
    return int(rows or 0), int(users or 0)


def _load_partition(conn: sa.Connection, tables: Tables, run_id: str, parts: Iterable[pd.DataFrame],
                    carry_from: str | None = None) -> tuple[int, tuple[int, int]]:
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
    if carry_from:
        _require_rows(conn, tables, run_id, carry_from)
    written = 0
    for rows in parts:  # one shard in memory at a time
        _copy_rows(conn, staging, rows)
        written += len(rows)
    carried = (0, 0)
    if carry_from:
        _ddl(conn, f"CREATE INDEX ON {staging} (user_id)")  # the carry's look-up (the partition keeps it)
        carried = _carry_over(conn, tables, run_id, staging, carry_from)
    _ddl(conn, f"ALTER TABLE {staging} ADD PRIMARY KEY (run_id, user_id, rank)")  # one sort, not 20M inserts
    _ddl(conn, f"DROP TABLE IF EXISTS {partition}")
    # rows of this run in a pre-partitioning table (the DEFAULT partition), if there is one
    conn.execute(sa.text(f"DELETE FROM {tables.results} WHERE run_id = :r"), {"r": run_id})
    _ddl(conn, f"ALTER TABLE {staging} RENAME TO {partition}")
    _ddl(conn, f"ALTER TABLE {tables.results} ATTACH PARTITION {partition} FOR VALUES IN ({literal})")
    return written, carried


def _insert_rows(conn: sa.Connection, table: str, run_id: str, parts: Iterable[pd.DataFrame], chunk: int = 50_000,
                 columns: tuple[str, ...] = RESULT_COLUMNS) -> int:
    """Replace the run's rows of `table` (SQLite, inside the switch transaction): the driver's
    executemany over plain tuples, one statement prepared once, in the transaction SQLAlchemy
    holds; times are stored as SQLAlchemy stores them, so every reader parses them alike."""
    conn.execute(sa.text(f"DELETE FROM {table} WHERE run_id = :r"), {"r": run_id})
    cursor = conn.connection.driver_connection.cursor()
    statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    as_stored = sa.DateTime(timezone=True).dialect_impl(conn.dialect).bind_processor(conn.dialect) or (lambda value: value)
    written = 0
    try:
        for rows in parts:
            frame = rows[list(columns)]
            if "generated_at" in frame:  # one time per publish (carried rows keep theirs): convert each once
                stamps = frame["generated_at"]
                stored = {t: as_stored(pd.Timestamp(t).to_pydatetime()) for t in stamps.dropna().unique()}
                frame = frame.assign(generated_at=stamps.map(stored))
            for lo in range(0, len(frame), chunk):
                part = frame.iloc[lo : lo + chunk]
                # plain Python values, column by column (SQLite binds a float NaN as NULL)
                cursor.executemany(statement, zip(*(part[c].tolist() for c in columns), strict=True))
            written += len(frame)
    except conn.dialect.dbapi.Error as error:  # as SQLAlchemy would raise it (IntegrityError, ...)
        raise sa.exc.DBAPIError.instance(statement, None, error, conn.dialect.dbapi.Error) from error
    finally:
        cursor.close()
    return written


def _insert_run(conn: sa.Connection, tables: Tables, run_id: str, parts: Iterable[pd.DataFrame],
                carry_from: str | None) -> tuple[int, tuple[int, int]]:
    """SQLite: the run's rows, and those carried over from `carry_from`, inside the switch transaction."""
    if carry_from:
        _require_rows(conn, tables, run_id, carry_from)
    written = _insert_rows(conn, tables.results, run_id, parts)
    return written, _carry_over(conn, tables, run_id, tables.results, carry_from) if carry_from else (0, 0)


def _take_publisher_lock(conn: sa.Connection, tables: Tables) -> None:
    """One publisher at a time per reader view, across processes, DAGs and machines: held
    until the switch transaction ends. PostgreSQL: an advisory lock (bounded by lock_timeout);
    SQLite: the database's write lock, taken by a write before anything is read."""
    if is_postgres(conn):
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{PUBLISH_LOCK_TIMEOUT}'")
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"recsys publish {tables.view}"})
    else:
        conn.execute(sa.text(f"DELETE FROM {tables.pointer} WHERE 0 = 1"))


def _wait_for_statements_planned_before_attach(engine: sa.Engine, tables: Tables) -> None:
    """Wait until every transaction that held a lock on the results table when the new partition
    was attached has ended (PostgreSQL's WaitForLockers, done through pg_locks, which any role may
    read).

    A reader's statement reads the partition list when it locks the table, and takes its data
    snapshot later. One that locked before the attach committed and snapshots after the switch
    commits follows the new pointer to a partition its plan lacks: no rows at all. Such a
    statement holds its lock until its transaction ends, so once those transactions are gone (or
    sit idle between statements) every statement that can see the new pointer also knows the new
    partition. Normally this is a few milliseconds, and at most PLANNED_BEFORE_ATTACH_WAIT_S. A
    reader idle inside an open transaction is not waited for (it runs nothing now); PostgreSQL does
    not refresh the partition list of a table a transaction already holds, so such a reader's next
    statement may miss the new run: readers should not hold transactions open across publishes
    (docs/production.md)."""
    query = sa.text(
        "SELECT DISTINCT l.virtualtransaction FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid "
        "WHERE l.locktype = 'relation' AND l.relation = to_regclass(:t) AND l.pid IS DISTINCT FROM pg_backend_pid() "
        "AND COALESCE(a.state, '') NOT LIKE 'idle in transaction%'"  # between statements: nothing planned to wait for
    )
    with engine.connect() as conn:
        waiting = set(conn.execute(query, {"t": tables.results}).scalars())
        deadline = time.monotonic() + PLANNED_BEFORE_ATTACH_WAIT_S
        while waiting and time.monotonic() < deadline:
            time.sleep(0.005)
            waiting &= set(conn.execute(query, {"t": tables.results}).scalars())
    if waiting:
        log.warning("%d reader transaction(s) open since before the attach of the new run; switching anyway", len(waiting))


def _newer_run_shown(conn: sa.Connection, tables: Tables, run_id: str) -> str | None:
    """The run readers see now, when it started after `run_id` did (so must not be replaced)."""
    current = pointer_run(conn, tables)
    if current is None or current == run_id:
        return None
    started = dict(conn.execute(
        sa.text(f"SELECT run_id, started_at FROM {tables.runs} WHERE run_id IN (:a, :b)"), {"a": current, "b": run_id}
    ).all())
    mine, theirs = str(started.get(run_id) or ""), str(started.get(current) or "")
    return current if mine and theirs and theirs > mine else None


def _refuse_if_stale(conn: sa.Connection, tables: Tables, run_id: str) -> None:
    if newer := _newer_run_shown(conn, tables, run_id):
        raise StalePublishError(f"run {run_id} not published: readers already see run {newer}, which started after it")


def _require_rows(conn: sa.Connection, tables: Tables, run_id: str, carry_from: str) -> None:
    if conn.execute(sa.text(f"SELECT 1 FROM {tables.results} WHERE run_id = :r LIMIT 1"), {"r": carry_from}).first() is None:
        raise PublishError(f"run {run_id} not published: the lists it keeps come from run {carry_from}, whose rows "
                           "are gone (retired); run it again with lists=all")


def _write_companions(conn: sa.Connection, tables: Tables, run_id: str, companions: dict[str, pd.DataFrame],
                      now: datetime) -> dict[str, int]:
    """The run's fallback list, similar items and catalogue snapshot (scoring.companions), inside the
    switch transaction."""
    written = {}
    for name, table, columns in (("fallback", tables.fallback, FALLBACK_COLUMNS), ("similar", tables.similar, SIMILAR_COLUMNS),
                                 ("items", tables.items, ITEM_COLUMNS)):
        frame = companions.get(name)
        if frame is None:
            continue
        frame = frame.assign(run_id=run_id, generated_at=now)
        columns = ("run_id", *columns, "generated_at")
        if is_postgres(conn):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE run_id = :r"), {"r": run_id})
            _copy_rows(conn, table, frame, columns=columns)
        else:
            _insert_rows(conn, table, run_id, [frame], columns=columns)
        written[name] = len(frame)
    return written


def publish_recommendations(
    engine: sa.Engine, tables: Tables, run_id: str, rows: pd.DataFrame | Iterable[pd.DataFrame], retain_runs: int,
    on_switch: Callable[[], None] | None = None, companions: dict[str, pd.DataFrame] | None = None,
    carry_from: str | None = None,
) -> dict[str, Any]:
    """Write the rows of `run_id` (one frame, or several such as one per shard, read one at a
    time) and switch readers to it in one commit (PostgreSQL: the run's partition is attached
    in a commit before, invisible until then); then retire old runs.

    Publishers are serialised (`_take_publisher_lock`); a run never replaces one that started
    after it (StalePublishError). `on_switch` (e.g. promoting the model in the registry) runs
    under the same lock just before COMMIT: if it fails, readers keep the previous run.
    `companions` ("fallback", "similar": companions.py frames) are written in the switch
    transaction, so their views change run in the same commit as the users' lists.
    `carry_from`: a run whose lists are kept, in this run, for every user `rows` has none for
    (a `lists=changed` night); that run must still have its rows (PublishError otherwise)."""
    apply_schema(engine, tables)
    postgres = is_postgres(engine)
    now = utcnow()

    def stamped(parts: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for part in parts:
            part = part.assign(run_id=run_id, generated_at=now)
            defaults = {c: ADDED_DEFAULTS.get(c) for c in ADDED_COLUMNS if c not in part}
            yield part.assign(**defaults) if defaults else part

    parts = stamped([rows] if isinstance(rows, pd.DataFrame) else rows)

    if postgres:
        # The partition is attached and committed before the switch, never in the same commit:
        # a reader's statement may be planned (partition list read) before a commit and run on
        # a snapshot taken after it; had the attach and the pointer switch committed together,
        # such a statement would follow the new pointer to a partition its plan lacks, and see
        # no rows at all. Nor may such a statement outlive the attach into the switch: the switch
        # waits for it. The attached partition stays invisible until the pointer names it.
        with engine.begin() as conn:
            _refuse_if_stale(conn, tables, run_id)
            written, carry = _load_partition(conn, tables, run_id, parts, carry_from)
        _wait_for_statements_planned_before_attach(engine, tables)
    with engine.begin() as conn:
        _take_publisher_lock(conn, tables)
        try:
            _refuse_if_stale(conn, tables, run_id)
        except StalePublishError:
            if postgres:
                _drop_unshown_partition(engine, tables, run_id)
            raise
        if not postgres:
            written, carry = _insert_run(conn, tables, run_id, parts, carry_from)
        extras = _write_companions(conn, tables, run_id, companions or {}, now)
        switch = sa.text(
            f"INSERT INTO {tables.pointer} (view_name, run_id, switched_at) VALUES (:v, :r, :t) "
            "ON CONFLICT (view_name) DO UPDATE SET run_id = excluded.run_id, switched_at = excluded.switched_at"
        ).bindparams(sa.bindparam("t", type_=sa.DateTime(timezone=True)))
        conn.execute(switch, {"v": tables.view, "r": run_id, "t": now})
        if on_switch is not None:
            on_switch()
    carried, carried_users = carry
    log.info("published %d rows of run %s%s; readers of %s now see it", written + carried, run_id,
             f" ({carried} rows of {carried_users} users carried over from run {carry_from})" if carry_from else "",
             tables.view)
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
    return {"rows_written": written + carried, "rows_carried": carried, "users_carried": carried_users,
            "published_at": now.isoformat(), "retired_runs": retired,
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
    if not is_postgres(conn):
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
        for table in (tables.fallback, tables.similar, tables.items):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE run_id = :r"), {"r": run_id})
    return retired
