"""The results database's DDL: tables and reader views from `sql/`, made or brought up to date.

Applied by writers only (`recsys init-db`, a run's first record, the first publish), never by
readers: a reader of a deployment that has not run yet gets empty answers, not DDL.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from recsys_tasks.db.tables import ADDED_COLUMNS, RESULT_COLUMNS, Tables, is_postgres, sql_file

log = logging.getLogger(__name__)

PARTITION_BY = " PARTITION BY LIST (run_id)"
SCHEMA_LOCK_TIMEOUT = "1s"  # DDL waits at most this long for a reader before giving up and retrying
VIEWS = (("view", "current_view.sql"), ("runs_public", "runs_public_view.sql"),
         ("fallback_view", "fallback_view.sql"), ("similar_view", "similar_view.sql"),
         ("detailed_view", "detailed_view.sql"))  # after the view it reads


def statements(script: str) -> list[str]:
    """Split a SQL script on semicolons, keeping `$$ ... $$` bodies (DO blocks) whole."""
    without_comments = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    found, current, in_body = [], [], False
    for piece in without_comments.split("$$"):
        if in_body:
            current.append(f"$${piece}$$")
        else:
            *complete, rest = piece.split(";")
            for part in complete:
                found.append("".join(current) + part)
                current = []
            current.append(rest)
        in_body = not in_body
    found.append("".join(current))
    return [s.strip() for s in found if s.strip()]


def schema_is_current(engine: sa.Engine, tables: Tables) -> bool:
    """True when every table and view exists with today's columns: no DDL, and no lock, needed."""
    inspector = sa.inspect(engine)
    names = set(inspector.get_table_names()) | set(inspector.get_view_names())
    if not tables.all_names() <= names:
        return False
    if is_postgres(engine) and tables.results not in _partitioned_tables(engine):
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
            if not is_postgres(engine) or "lock timeout" not in str(error.orig) or attempt == attempts:
                raise
            log.warning("schema change waited %s for a lock held by a reader; retry %d of %d",
                        SCHEMA_LOCK_TIMEOUT, attempt, attempts - 1)
            time.sleep(0.5 * attempt)


def _apply_schema_once(engine: sa.Engine, tables: Tables) -> None:
    postgres = is_postgres(engine)
    create_view = "CREATE OR REPLACE VIEW" if postgres else "CREATE VIEW IF NOT EXISTS"
    with engine.begin() as conn:
        legacy = None
        if postgres:
            # concurrent first publishes would race on CREATE TABLE IF NOT EXISTS
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": tables.results})
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{SCHEMA_LOCK_TIMEOUT}'")
            legacy = _set_aside_unpartitioned_results(conn, tables)
        for statement in statements(sql_file("schema.sql", tables, PARTITION_BY if postgres else "")):
            conn.execute(sa.text(statement))
        _upgrade_older_schema(conn, tables)
        if legacy:
            conn.exec_driver_sql(f"ALTER TABLE {tables.results} ATTACH PARTITION {legacy} DEFAULT")
            log.info("%s is now partitioned by run; the runs already there stay readable in %s", tables.results, legacy)
        for attribute, body in VIEWS:
            conn.execute(sa.text(f"{create_view} {getattr(tables, attribute)} AS {sql_file(body, tables)}"))
        if postgres:
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('recsys reader role'))")
            for statement in statements(sql_file("reader_role.sql", tables)):
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
        # recreated below, in the same transaction (PostgreSQL: with the views that read it)
        conn.exec_driver_sql(f"DROP VIEW {tables.view}" + (" CASCADE" if is_postgres(conn) else ""))
