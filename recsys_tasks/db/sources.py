"""SQL tables the application owns, read and written as sources: the interaction log (read
through a column choice and a time window, written by `recsys demo-data`) and the catalogue."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import sqlalchemy as sa

from recsys_tasks.db.tables import sqlite_file


def read_log_table(url: str, table: str, choose: Callable[[list[str]], dict[str, str]],
                   since: pd.Timestamp | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table's rows, its columns picked by `choose(column names) -> {canonical: source}` and
    labelled with the canonical names, and that choice. With `since`, the window is applied in
    SQL unless the `ts` column holds epoch numbers (their unit is only known from the values:
    the caller windows those after reading). SQLAlchemy errors are the caller's to word."""
    engine = sa.create_engine(url)
    try:
        reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
        mapping = choose([c.name for c in reflected.c])
        query = sa.select(*(reflected.c[source].label(canonical) for canonical, source in mapping.items()))
        ts_column = reflected.c[mapping["ts"]] if "ts" in mapping else None
        if since is not None and ts_column is not None and not isinstance(ts_column.type, (sa.Integer, sa.Numeric)):
            # compare in the column's own type: SQLite stores text, PostgreSQL timestamps
            bound = since.strftime("%Y-%m-%d %H:%M:%S") if engine.dialect.name == "sqlite" else since.to_pydatetime()
            query = query.where(ts_column >= bound)
        with engine.connect() as conn:
            return pd.read_sql(query, conn), mapping
    finally:
        engine.dispose()


def read_table(url: str, table: str) -> pd.DataFrame:
    """Every row of a table (a catalogue)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(f'SELECT * FROM "{table}"'), conn)
    finally:
        engine.dispose()


def replace_table(url: str, table: str, frame: pd.DataFrame) -> None:
    """Write `frame` as the whole table (made or replaced), in one transaction."""
    if (db_file := sqlite_file(url)) is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            frame.to_sql(table, conn, if_exists="replace", index=False, chunksize=10_000)
    finally:
        engine.dispose()
