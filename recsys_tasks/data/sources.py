"""Reading and writing interaction logs in the canonical frame.

Canonical frame: `user_id` (str), `item_id` (str), `ts` (UTC datetime), `event_type` (str),
`value` (float). Sources are named by URI:

- `sqlite:///path.db?table=interactions`, `postgresql+psycopg://...?table=events`: a SQL table,
  read through SQLAlchemy, restricted to the run's window in SQL;
- a file, a folder, or a glob of daily partitions, local or `s3://bucket/prefix` (boto3; set
  RECSYS_S3_ENDPOINT_URL for MinIO), in any format of `formats.py`.

Every kind of source may name its columns its own way: `columns.py` maps common names
(`timestamp`, `userId`, `product_id`...) and an explicit mapping (`user_id=uid,ts=created_at`);
the frame returned says what was renamed in `attrs["column_mapping"]`.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from recsys_tasks.config import environment
from recsys_tasks.data.columns import CANONICAL_COLUMNS, SETTING, renamed, resolve_columns
from recsys_tasks.data.formats import NAMED_COLUMN_FORMATS, detect_format, parse, parse_item_attributes
from recsys_tasks.db.sources import read_log_table, replace_table
from recsys_tasks.db.tables import sqlite_file
from recsys_tasks.errors import SourceError, SourceNotLandedError
from recsys_tasks.redact import redact

log = logging.getLogger(__name__)


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
        raise SourceError(f"SQL source {redact(uri)!r} needs the table name as '?table=NAME'")
    return SqlTable(url=url.difference_update_query(["table"]).render_as_string(hide_password=False), table=str(table))


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source: its format (None: detect), column names, and time window."""

    fmt: str | None = None
    columns: tuple[tuple[str, str], ...] = ()  # (canonical name, source name) pairs; beat any alias
    since: pd.Timestamp | None = None  # keep events at or after this instant


def parse_column_map(text: str | None) -> tuple[tuple[str, str], ...]:
    """`user_id=uid,item_id=product` -> (("user_id", "uid"), ("item_id", "product"))."""
    if not text:
        return ()
    pairs = []
    for part in text.split(","):
        canonical, sep, source = part.partition("=")
        if not sep or canonical.strip() not in CANONICAL_COLUMNS or not source.strip():
            raise SourceError(f"bad column mapping {part!r}: use canonical=source with canonical in {CANONICAL_COLUMNS}")
        if canonical.strip() in dict(pairs):
            raise SourceError(f"bad column mapping {text!r}: {canonical.strip()} is mapped twice")
        pairs.append((canonical.strip(), source.strip()))
    return tuple(pairs)


def read_interactions(uri: str, options: SourceOptions | None = None) -> pd.DataFrame:
    """Load a source into the canonical frame; unreadable sources raise SourceError."""
    options = options or SourceOptions()
    sql = parse_sql_source(uri)
    if sql is not None:
        frame, mapping = _read_sql(sql, uri, options)
    else:
        parts, mappings = [], []
        for name, data in iter_files(uri):
            part, part_mapping = _read_file(name, data, options)
            parts.append(part)
            mappings.append(part_mapping)
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        mapping = _merged(mappings)
    canonical = to_canonical(frame, uri)
    attrs = dict(canonical.attrs)
    if options.since is not None:  # SQL sources were windowed in the query, except epoch-number columns
        canonical = canonical[canonical["ts"].isna() | (canonical["ts"] >= options.since)].reset_index(drop=True)
    canonical.attrs = {**attrs, "column_mapping": mapping}
    log.info("columns of %s: %s", uri, ", ".join(f"{c} <- {s}" for c, s in mapping.items()) or "canonical names, none renamed")
    return canonical


def _read_file(name: str, data: bytes, options: SourceOptions) -> tuple[pd.DataFrame, dict[str, str]]:
    """One file as a frame with canonical column names, and what was renamed."""
    fmt = options.fmt or detect_format(name)
    frame = parse(data, name, fmt)
    if fmt not in NAMED_COLUMN_FORMATS:  # the parser named the columns; a mapping has nothing to say
        return frame, {}
    mapping = resolve_columns(frame.columns, dict(options.columns), name)
    # select rather than rename: a column the mapping passes over (say `ts` beside an explicit
    # `ts=created_at`) must not survive as a second `ts`
    return frame[list(mapping.values())].set_axis(list(mapping), axis=1), renamed(mapping)


def _merged(mappings: list[dict[str, str]]) -> dict[str, str]:
    """One report for many files; partitions that name a column differently are listed as `a | b`."""
    merged: dict[str, list[str]] = {}
    for mapping in mappings:
        for canonical, source in mapping.items():
            if source not in merged.setdefault(canonical, []):
                merged[canonical].append(source)
    return {canonical: " | ".join(sources) for canonical, sources in merged.items()}


def _read_sql(sql: SqlTable, uri: str, options: SourceOptions) -> tuple[pd.DataFrame, dict[str, str]]:
    if (db_file := sqlite_file(sql.url)) is not None and not db_file.exists():
        raise SourceNotLandedError(f"SQLite database {db_file} does not exist (source {uri!r}): not landed yet?")

    def choose(columns: list[str]) -> dict[str, str]:
        return resolve_columns(columns, dict(options.columns), f"table {sql.table!r}")

    try:
        frame, mapping = read_log_table(sql.url, sql.table, choose, options.since)
    except sa.exc.NoSuchTableError:
        raise SourceNotLandedError(f"no table {sql.table!r} in {redact(sql.url)}: not landed yet?") from None
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(f"cannot read table {sql.table!r} from {redact(sql.url)}: {redact(str(exc))}") from exc
    return frame, renamed(mapping)


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
        raise SourceNotLandedError(f"interaction source {uri!r} does not exist: not landed yet?")
    if not matches:
        raise SourceNotLandedError(f"no files match {uri!r}: not landed yet?")
    for match in matches:
        yield str(match), match.read_bytes()


def _iter_s3(uri: str) -> Iterator[tuple[str, bytes]]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    client = environment.s3_client()
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
        raise SourceNotLandedError(f"no objects match {uri!r}: not landed yet?")
    for k in keys:
        yield f"s3://{bucket}/{k}", client.get_object(Bucket=bucket, Key=k)["Body"].read()


def to_canonical(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Select and type the canonical columns; a missing id/ts column is a SourceError."""
    missing = [c for c in ("user_id", "item_id", "ts") if c not in frame.columns]
    if missing:
        raise SourceError(
            f"{origin}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}. "
            f"Rename them, or say which columns hold them with {SETTING}, e.g. {SETTING}=\"{missing[0]}=<column>\""
        )
    ts = parse_timestamps(frame["ts"])
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


# An epoch number's unit is told by its size. 1e11 seconds is the year 5138 but 1e11 ms is
# 1973-03-03, so a number >= 1e11 is milliseconds, >= 1e14 microseconds, >= 1e17 nanoseconds
# (each threshold is March 1973 in the larger unit), and below 1e11 seconds. Only a log of ms
# from before March 1973 would be misread.
_EPOCH_UNITS = ((1e17, "ns"), (1e14, "us"), (1e11, "ms"))  # and seconds below 1e11
_NS_PER_UNIT = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}
_LAST_NS = 9.2e18  # datetime64[ns] ends in 2262; larger epochs become NaT, and validation quotes them


def parse_timestamps(values: pd.Series) -> pd.Series:
    """UTC datetimes from datetimes, date strings (ISO or other) or epoch numbers (s/ms/us/ns).

    Numbers and numeric strings are epochs by magnitude (above), except 8-digit integers that
    read as a YYYYMMDD date (20260101), which as epoch seconds would all fall in August 1970.
    What is neither becomes NaT.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True, errors="coerce")
    present = values.reset_index(drop=True).dropna()  # positions, whatever index the caller's frame has
    out = pd.Series(pd.NaT, index=pd.RangeIndex(len(values)), dtype="datetime64[ns, UTC]")
    # Each parser is slow on the other's values (date parsing of a million epoch strings takes
    # minutes), so the first values decide which goes first; the second gets what is left. Only
    # a short bare number that also reads as a date (a year, `2026`) can come out either way.
    sample = present.head(1000)
    if _numbers(sample).size > sample.size // 2:
        numbers = _numbers(present)
        text = present.drop(numbers.index)
    else:
        text, numbers = present, None
    if len(text):
        out[text.index] = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
    if numbers is None:
        numbers = _numbers(present[out[present.index].isna().to_numpy()])
    compact = numbers[(numbers >= 19000101) & (numbers <= 21001231) & (numbers % 1 == 0)]
    if len(compact):
        dates = pd.to_datetime(compact.astype("int64").astype(str), format="%Y%m%d", utc=True, errors="coerce").dropna()
        out[dates.index] = dates
        numbers = numbers.drop(dates.index)
    magnitude = numbers.abs().astype("float64")
    units = np.select([magnitude >= floor for floor, _ in _EPOCH_UNITS], [unit for _, unit in _EPOCH_UNITS], "s")
    for unit, per_unit in _NS_PER_UNIT.items():
        chosen = numbers[(units == unit) & (magnitude * per_unit < _LAST_NS)]
        if len(chosen):
            out[chosen.index] = pd.to_datetime(chosen, unit=unit, utc=True)
    out.index = values.index
    return out


def _numbers(values: pd.Series) -> pd.Series:
    """The finite numbers among values (numeric strings included), by the same index."""
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.dtype.kind in "iu":  # numpy or nullable integers
        return numbers.astype("int64")  # integers stay exact: ns epochs exceed float precision
    numbers = numbers.astype("float64")
    return numbers[np.isfinite(numbers)]


def write_interactions(frame: pd.DataFrame, target: str) -> str:
    """Write a canonical frame to a SQL table (replacing it) or a CSV/Parquet file."""
    sql = parse_sql_source(target)
    if sql is not None:
        replace_table(sql.url, sql.table, frame)
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
