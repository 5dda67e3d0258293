"""Erasure in the database: every project table with a `user_id` loses the users' rows in one
transaction, and run messages that quote them are scrubbed."""

from __future__ import annotations

import dataclasses
import re

import sqlalchemy as sa

from recsys_tasks.db.tables import Tables

DELETE_CHUNK = 500


def owned_user_tables(conn: sa.Connection, tables: Tables) -> list[str]:
    """Tables of the project with a user_id column: those `Tables` names, and staging tables a
    killed load left behind (PostgreSQL). Partitions are reached through their parent."""
    names = [getattr(tables, f.name) for f in dataclasses.fields(tables) if f.name not in ("view", "reader_role")]
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    prefix = tables.partition("").rsplit("_", 1)[0] + "_"  # `<results>_run_`
    names += sorted(t for t in present if t.startswith(prefix) and t.endswith("_load"))
    return [t for t in dict.fromkeys(names) if t in present and "user_id" in {c["name"] for c in inspector.get_columns(t)}]


def delete_users(engine: sa.Engine, tables: Tables, ids: list[str], pattern: re.Pattern, erased: str) -> dict[str, int]:
    """Rows removed per table, and run messages scrubbed (their mentions replaced by `erased`)."""
    counts: dict[str, int] = {}
    with engine.begin() as conn:  # one transaction: readers see the users gone everywhere at once
        for table in owned_user_tables(conn, tables):
            statement = sa.text(f"DELETE FROM {table} WHERE user_id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
            counts[table] = sum(
                conn.execute(statement, {"ids": ids[lo : lo + DELETE_CHUNK]}).rowcount for lo in range(0, len(ids), DELETE_CHUNK)
            )
        if sa.inspect(conn).has_table(tables.runs):
            rows = conn.execute(sa.text(f"SELECT run_id, message FROM {tables.runs} WHERE message IS NOT NULL")).all()
            scrubbed = [(run_id, pattern.sub(erased, message)) for run_id, message in rows if pattern.search(message)]
            for run_id, message in scrubbed:
                conn.execute(sa.text(f"UPDATE {tables.runs} SET message = :m WHERE run_id = :r"), {"m": message, "r": run_id})
            counts[f"{tables.runs}.message"] = len(scrubbed)
    return counts


def tables_mentioning(engine: sa.Engine, tables: Tables, ids: list[str]) -> list[str]:
    """The project's tables that still hold a row of these users."""
    statement = "SELECT COUNT(*) FROM {} WHERE user_id IN :ids"
    with engine.connect() as conn:
        return [
            t for t in owned_user_tables(conn, tables)
            if conn.execute(sa.text(statement.format(t)).bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids}).scalar()
        ]


def count_source_events(url: str, table: str, column: str, ids: list[str]) -> int:
    """How many events of these users a SQL source table holds."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text(f'SELECT COUNT(*) FROM {table} WHERE "{column}" IN :ids').bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": ids},
            ).scalar()
    finally:
        engine.dispose()
