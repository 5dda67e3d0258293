"""Reading and writing interaction logs in the canonical frame.

Canonical frame: `user_id` (str), `item_id` (str), `ts` (UTC datetime), `event_type` (str),
`value` (float). Sources are named by URI:

- `sqlite:///path.db?table=interactions`, `postgresql+psycopg://...?table=events`: a SQL table,
  read through SQLAlchemy, restricted to the run's window in SQL;
- a file, a folder, or a glob of daily partitions, local or `s3://bucket/prefix` (boto3; set
  RECSYS_S3_ENDPOINT_URL for MinIO), in any format of `formats.py`.

Column names can be mapped (`user_id=uid,ts=created_at`) for every kind of source.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from recsys_tasks.errors import SourceError
from recsys_tasks.formats import parse, parse_item_attributes

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


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source: its format (None: detect), column names, and time window."""

    fmt: str | None = None
    columns: tuple[tuple[str, str], ...] = ()  # (canonical name, source name) pairs
    since: pd.Timestamp | None = None  # keep events at or after this instant

    def renames(self) -> dict[str, str]:
        return {source: canonical for canonical, source in self.columns}


def parse_column_map(text: str | None) -> tuple[tuple[str, str], ...]:
    """`user_id=uid,item_id=product` -> (("user_id", "uid"), ("item_id", "product"))."""
    if not text:
        return ()
    pairs = []
    for part in text.split(","):
        canonical, sep, source = part.partition("=")
        if not sep or canonical.strip() not in CANONICAL_COLUMNS or not source.strip():
            raise SourceError(f"bad column mapping {part!r}: use canonical=source with canonical in {CANONICAL_COLUMNS}")
        pairs.append((canonical.strip(), source.strip()))
    return tuple(pairs)


def read_interactions(uri: str, options: SourceOptions | None = None) -> pd.DataFrame:
    """Load a source into the canonical frame; unreadable sources raise SourceError."""
    options = options or SourceOptions()
    sql = parse_sql_source(uri)
    if sql is not None:
        frame = _read_sql(sql, uri, options)
    else:
        parts = [parse(data, name, options.fmt) for name, data in iter_files(uri)]
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        frame = frame.rename(columns=options.renames())
    canonical = to_canonical(frame, uri)
    if options.since is not None and sql is None:
        canonical = canonical[canonical["ts"].isna() | (canonical["ts"] >= options.since)].reset_index(drop=True)
    return canonical


def _read_sql(sql: SqlTable, uri: str, options: SourceOptions) -> pd.DataFrame:
    if (db_file := sqlite_file(sql.url)) is not None and not db_file.exists():
        raise SourceError(f"SQLite database {db_file} does not exist (source {uri!r})")
    engine = sa.create_engine(sql.url)
    try:
        table = sa.Table(sql.table, sa.MetaData(), autoload_with=engine)
        names = {canonical: source for canonical, source in options.columns}
        selected = []
        for canonical in CANONICAL_COLUMNS:
            source = names.get(canonical, canonical)
            if source in table.c:
                selected.append(table.c[source].label(canonical))
            elif canonical in names:
                raise SourceError(f"table {sql.table!r} has no column {source!r} (mapped to {canonical})")
        query = sa.select(*selected)
        if options.since is not None and "ts" in {c.name for c in selected}:
            ts_column = table.c[names.get("ts", "ts")]
            # compare in the column's own type: SQLite stores text, PostgreSQL timestamps
            bound = options.since.strftime("%Y-%m-%d %H:%M:%S") if engine.dialect.name == "sqlite" else options.since.to_pydatetime()
            query = query.where(ts_column >= bound)
        with engine.connect() as conn:
            return pd.read_sql(query, conn)
    except sa.exc.NoSuchTableError:
        raise SourceError(f"no table {sql.table!r} in {sql.url}") from None
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(f"cannot read table {sql.table!r} from {sql.url}: {exc}") from exc
    finally:
        engine.dispose()


_GLOB = re.compile(r"[*?\[]")


def iter_files(uri: str) -> Iterator[tuple[str, bytes]]:
    """(name, content) of every file a URI names: one file, a folder, a glob, or an S3 prefix."""
    if uri.startswith("s3://"):
        yield from _iter_s3(uri)
        return
    path = Path(uri)
    if _GLOB.search(uri):
        matches = sorted(Path(p) for p in glob.glob(uri) if Path(p).is_file())
    elif path.is_dir():
        matches = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    elif path.exists():
        matches = [path]
    else:
        raise SourceError(f"interaction source {uri!r} does not exist")
    if not matches:
        raise SourceError(f"no files match {uri!r}")
    for match in matches:
        yield str(match), match.read_bytes()


def _iter_s3(uri: str) -> Iterator[tuple[str, bytes]]:
    import boto3

    bucket, _, key = uri[len("s3://") :].partition("/")
    client = boto3.client("s3", endpoint_url=os.environ.get("RECSYS_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL"))
    prefix = _GLOB.split(key, 1)[0] if _GLOB.search(key) else key
    try:
        keys = [
            obj["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        ]
    except client.exceptions.NoSuchBucket:
        raise SourceError(f"no S3 bucket {bucket!r} (source {uri!r})") from None
    if _GLOB.search(key):
        keys = [k for k in keys if fnmatch.fnmatch(k, key)]
    elif key and not key.endswith("/"):
        keys = [k for k in keys if k == key] or [k for k in keys if k.startswith(key + "/")]
    keys = sorted(k for k in keys if not k.endswith("/"))
    if not keys:
        raise SourceError(f"no objects match {uri!r}")
    for k in keys:
        yield f"s3://{bucket}/{k}", client.get_object(Bucket=bucket, Key=k)["Body"].read()


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


def read_item_attributes(uri: str) -> pd.DataFrame:
    """Item attributes as `item_id, attribute` rows, from any file location `iter_files` knows."""
    parts = [parse_item_attributes(data, name) for name, data in iter_files(uri)]
    return pd.concat(parts, ignore_index=True).drop_duplicates()
