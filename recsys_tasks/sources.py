"""Reading and writing interaction logs in the canonical frame.

Canonical frame: `user_id` (str), `item_id` (str), `ts` (UTC datetime), `event_type` (str),
`value` (float). Sources are named by URI:

- `sqlite:///path.db?table=interactions`, `postgresql+psycopg://...?table=events`: a SQL table;
- `path/to/file.csv`, `file.parquet`: a file with the canonical columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from recsys_tasks.errors import SourceError

CANONICAL_COLUMNS = ("user_id", "item_id", "ts", "event_type", "value")


@dataclass(frozen=True)
class SqlTable:
    url: str  # SQLAlchemy URL without our own `table` query parameter
    table: str


def parse_sql_source(uri: str) -> SqlTable | None:
    """A SQL source when the URI has a SQLAlchemy dialect scheme, else None."""
    if "://" not in uri or uri.split("://", 1)[0].split("+")[0] not in {"sqlite", "postgresql", "postgres", "mysql"}:
        return None
    url = make_url(uri)
    table = url.query.get("table")
    if not table:
        raise SourceError(f"SQL source {uri!r} needs the table name as '?table=NAME'")
    return SqlTable(url=url.difference_update_query(["table"]).render_as_string(hide_password=False), table=str(table))


def sqlite_file(url: str) -> Path | None:
    """The database file behind a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def read_interactions(uri: str) -> pd.DataFrame:
    """Load a source into the canonical frame; unreadable sources raise SourceError."""
    sql = parse_sql_source(uri)
    if sql is not None:
        if (db_file := sqlite_file(sql.url)) is not None and not db_file.exists():
            raise SourceError(f"SQLite database {db_file} does not exist (source {uri!r})")
        engine = sa.create_engine(sql.url)
        try:
            with engine.connect() as conn:
                frame = pd.read_sql_table(sql.table, conn)
        except ValueError as exc:  # pandas raises ValueError for a missing table
            raise SourceError(f"cannot read table {sql.table!r} from {sql.url}: {exc}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"cannot read table {sql.table!r} from {sql.url}: {exc}") from exc
        finally:
            engine.dispose()
    else:
        path = Path(uri)
        if not path.exists():
            raise SourceError(f"interaction source {uri!r} does not exist")
        try:
            if path.suffix == ".parquet":
                frame = pd.read_parquet(path)
            elif path.suffix == ".csv":
                frame = pd.read_csv(path, dtype={"user_id": str, "item_id": str, "event_type": str})
            else:
                raise SourceError(f"cannot tell the format of {uri!r}: use a .csv or .parquet file")
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise SourceError(f"cannot parse {uri!r}: {exc}") from exc
    return to_canonical(frame, uri)


def to_canonical(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Select and type the canonical columns; a missing id/ts column is a SourceError."""
    missing = [c for c in ("user_id", "item_id", "ts") if c not in frame.columns]
    if missing:
        raise SourceError(
            f"{origin}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}"
        )
    ts = pd.to_datetime(frame["ts"], utc=True, errors="coerce", format="mixed")
    out = pd.DataFrame(
        {
            "user_id": frame["user_id"].astype("string"),
            "item_id": frame["item_id"].astype("string"),
            # unparseable timestamps become NaT here; validation reports them, quoting the source
            "ts": ts,
            "event_type": frame["event_type"].astype("string") if "event_type" in frame else "interaction",
            "value": pd.to_numeric(frame["value"], errors="coerce") if "value" in frame else 1.0,
        }
    )
    unparsed = frame["ts"][ts.isna().to_numpy() & frame["ts"].notna().to_numpy()]
    out.attrs["unparseable_ts"] = [str(v) for v in unparsed.head(5)]
    return out


def write_interactions(frame: pd.DataFrame, target: str) -> str:
    """Write a canonical frame to a SQL table (replacing it) or a CSV/Parquet file."""
    sql = parse_sql_source(target)
    if sql is not None:
        if (db_file := sqlite_file(sql.url)) is not None:
            db_file.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(sql.url)
        try:
            with engine.begin() as conn:
                frame.to_sql(sql.table, conn, if_exists="replace", index=False, chunksize=10_000)
        finally:
            engine.dispose()
        return target
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise SourceError(f"cannot write {target!r}: use a SQL URL with ?table=, or a .csv/.parquet path")
    return target
