"""Parsers for the interaction file formats users arrive with, and format detection.

Each parser takes raw bytes and returns a frame with the canonical column names (before
typing). Detection goes by file name first (`u.data`, `ratings.dat`, `ratings.csv`, `.txt`,
`.csv`, `.parquet`) and can be overridden; a parser that meets content of another shape
raises `SourceError` naming the format it expected, instead of mis-parsing silently.
"""

from __future__ import annotations

import io
import json
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from recsys_tasks.config import SOURCE_FORMATS
from recsys_tasks.errors import SourceError

FORMATS = SOURCE_FORMATS


def detect_format(name: str) -> str:
    """Format from a file name; raises SourceError when the name says nothing."""
    base = PurePosixPath(name).name.lower()
    if base == "u.data":
        return "movielens-100k"
    if base == "ratings.dat":
        return "movielens-1m"
    if base == "ratings.csv":
        return "movielens-csv"
    for suffix, fmt in ((".parquet", "parquet"), (".pq", "parquet"), (".csv", "csv"), (".txt", "sequence")):
        if base.endswith(suffix):
            return fmt
    raise SourceError(f"cannot tell the format of {name!r} from its name; set source_format to one of {', '.join(FORMATS)}")


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:4096]


def _text(data: bytes, name: str, fmt: str) -> str:
    if _looks_binary(data):
        raise SourceError(f"{name}: binary content where {fmt} text was expected (wrong file, or set source_format)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected {fmt}") from None


def _table(text: str, name: str, fmt: str, sep: str, columns: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, header=None, names=columns, engine="python", dtype=str)
    except pd.errors.ParserError as exc:
        raise SourceError(f"{name}: not valid {fmt}: {exc}") from None
    if frame[columns[-1]].isna().all() and len(frame):
        raise SourceError(f"{name}: rows have fewer fields than {fmt} needs ({', '.join(columns)}); wrong format?")
    return frame


def parse_csv(data: bytes, name: str) -> pd.DataFrame:
    text = _text(data, name, "CSV")
    try:
        return pd.read_csv(io.StringIO(text), dtype={"user_id": str, "item_id": str, "event_type": str}, on_bad_lines="error")
    except pd.errors.ParserError as exc:
        raise SourceError(f"{name}: malformed CSV (ragged rows?): {exc}") from None
    except pd.errors.EmptyDataError:
        raise SourceError(f"{name}: empty file") from None


def parse_parquet(data: bytes, name: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise SourceError(f"{name}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None


def _ratings(frame: pd.DataFrame) -> pd.DataFrame:
    frame["ts"] = pd.to_numeric(frame["ts"], errors="coerce")
    frame["ts"] = pd.to_datetime(frame["ts"], unit="s", utc=True)
    frame["event_type"] = "rating"
    return frame


def parse_movielens_100k(data: bytes, name: str) -> pd.DataFrame:
    """`u.data`: user, item, rating, unix time, tab-separated, no header."""
    frame = _table(_text(data, name, "MovieLens u.data"), name, "MovieLens u.data", "\t", ["user_id", "item_id", "value", "ts"])
    return _ratings(frame)


def parse_movielens_1m(data: bytes, name: str) -> pd.DataFrame:
    """`ratings.dat`: `user::item::rating::unix time`."""
    frame = _table(_text(data, name, "MovieLens ratings.dat"), name, "MovieLens ratings.dat", "::", ["user_id", "item_id", "value", "ts"])
    return _ratings(frame)


def parse_movielens_csv(data: bytes, name: str) -> pd.DataFrame:
    """`ratings.csv` (ml-latest, ml-25m): header `userId,movieId,rating,timestamp`."""
    frame = parse_csv(data, name)
    expected = {"userId", "movieId", "rating", "timestamp"}
    if not expected <= set(frame.columns):
        raise SourceError(f"{name}: MovieLens ratings.csv needs columns {sorted(expected)}, found {list(frame.columns)}")
    frame = frame.rename(columns={"userId": "user_id", "movieId": "item_id", "rating": "value", "timestamp": "ts"})
    return _ratings(frame[["user_id", "item_id", "value", "ts"]].astype(str))


def parse_sequences(data: bytes, name: str) -> pd.DataFrame:
    """`user item item ...` per line (S3-Rec/ICLRec format); position becomes the timestamp."""
    users, items, positions = [], [], []
    for number, line in enumerate(_text(data, name, "sequence").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2 or not all(t.isdigit() for t in tokens):
            raise SourceError(f"{name}:{number}: expected 'user item item ...' (integer ids), got {line[:80]!r}")
        users.extend([tokens[0]] * (len(tokens) - 1))
        items.extend(tokens[1:])
        positions.extend(range(len(tokens) - 1))
    # order is all the format knows about time: position p becomes 2000-01-01 + p seconds
    ts = pd.Timestamp("2000-01-01", tz="UTC") + pd.to_timedelta(np.asarray(positions, dtype=np.int64), unit="s")
    return pd.DataFrame({"user_id": users, "item_id": items, "ts": ts, "event_type": "interaction"})


PARSERS = {
    "csv": parse_csv,
    "parquet": parse_parquet,
    "movielens-100k": parse_movielens_100k,
    "movielens-1m": parse_movielens_1m,
    "movielens-csv": parse_movielens_csv,
    "sequence": parse_sequences,
}


def parse(data: bytes, name: str, fmt: str | None = None) -> pd.DataFrame:
    fmt = fmt or detect_format(name)
    if fmt not in PARSERS:
        raise SourceError(f"unknown source_format {fmt!r}; known: {', '.join(FORMATS)}")
    return PARSERS[fmt](data, name)


def parse_item_attributes(data: bytes, name: str) -> pd.DataFrame:
    """Item attributes: `{"item": [attr, ...]}` JSON (S3-Rec) or a CSV/Parquet `item_id, attribute`."""
    if name.lower().endswith(".json"):
        try:
            mapping = json.loads(_text(data, name, "item-attribute JSON"))
        except json.JSONDecodeError as exc:
            raise SourceError(f"{name}: invalid JSON: {exc}") from None
        rows = [(str(item), str(attr)) for item, attrs in mapping.items() for attr in attrs]
        return pd.DataFrame(rows, columns=["item_id", "attribute"])
    frame = parse(data, name)
    if not {"item_id", "attribute"} <= set(frame.columns):
        raise SourceError(f"{name}: item attributes need columns item_id, attribute; found {list(frame.columns)}")
    return frame[["item_id", "attribute"]].astype(str)
