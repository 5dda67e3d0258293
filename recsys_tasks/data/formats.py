"""Parsers for the interaction file formats users arrive with, and format detection.

Each parser takes raw bytes and returns a frame with the canonical column names (before
typing). Detection goes by file name first (`u.data`, `ratings.dat`, `ratings.csv`, `.txt`,
`.csv`, `.parquet`) and can be overridden; a parser that meets content of another shape
raises `SourceError` naming the format it expected, instead of mis-parsing silently.
"""

from __future__ import annotations

import csv
import io
import json
import re
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


_BLANK_LINE = re.compile(r"^[ \t]+$", re.MULTILINE)


def _text(data: bytes, name: str, fmt: str) -> str:
    """Decoded text with the noise editors and exports add removed: a UTF-8 byte-order mark,
    CRLF line ends, and whitespace on otherwise blank lines (blank lines are then skipped)."""
    if _looks_binary(data):
        raise SourceError(f"{name}: binary content where {fmt} text was expected (wrong file, or set source_format)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected {fmt}") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    # only a line that starts with a space or tab can be blank-but-for-whitespace; `in` is cheap
    if any(marker in text for marker in ("\n ", "\n\t")) or text[:1] in (" ", "\t"):
        text = _BLANK_LINE.sub("", text)
    return text


def _delimited(text: str, name: str, fmt: str, sep: str) -> pd.DataFrame:
    """Every row of `sep`-separated text as strings, the first line included.

    Delimiters at the end of a line are dropped first: a stray trailing tab or comma (on every
    row or on some) is an empty field nobody named. (A quoted value that spans lines and ends a
    line with the delimiter would lose it; interaction logs do not carry such values.) Then the
    first line sets the width: a row with more fields fails as ragged, a shorter one is padded
    with empty values.
    """
    if f"{sep}\n" in text or text.endswith(sep):
        text = re.sub(rf"(?:{re.escape(sep)}[ \t]*)+$", "", text, flags=re.MULTILINE)
    try:
        # the C reader takes one-character delimiters only; `::` needs the Python one
        return pd.read_csv(io.StringIO(text), sep=sep, header=None, dtype=str, on_bad_lines="error",
                           engine="c" if len(sep) == 1 else "python")
    except pd.errors.ParserError as exc:
        raise SourceError(f"{name}: malformed {fmt} (ragged rows?): {exc}".strip()) from None
    except pd.errors.EmptyDataError:
        raise SourceError(f"{name}: empty file") from None


def _table(text: str, name: str, fmt: str, sep: str, columns: list[str]) -> pd.DataFrame:
    """A headerless file with a fixed list of columns (MovieLens)."""
    frame = _delimited(text, name, fmt, sep)
    if frame.shape[1] != len(columns) or frame.iloc[:, -1].isna().all():
        raise SourceError(
            f"{name}: rows have {frame.shape[1]} fields where {fmt} has {len(columns)} ({', '.join(columns)}); wrong format?"
        )
    return frame.set_axis(columns, axis=1)


def parse_csv(data: bytes, name: str) -> pd.DataFrame:
    """A CSV file with a header row; every column is read as text (ids keep leading zeros)."""
    text = _text(data, name, "CSV")
    rows = _delimited(text, name, "CSV", ",")
    # the header comes from the csv module, not from pandas, so that a column named NA stays NA
    first_line = text.lstrip("\n").partition("\n")[0]
    header = [column.strip() for column in next(csv.reader([first_line]))[: rows.shape[1]]]
    if len(header) != rows.shape[1]:
        raise SourceError(f"{name}: malformed CSV (ragged rows?): the header has {len(header)} fields, rows have {rows.shape[1]}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise SourceError(f"{name}: column(s) {', '.join(map(repr, repeated))} appear more than once in the header")
    return rows.iloc[1:].set_axis(header, axis=1).reset_index(drop=True)


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
    frame = _table(
        _text(data, name, "MovieLens ratings.dat"), name, "MovieLens ratings.dat", "::", ["user_id", "item_id", "value", "ts"]
    )
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

# formats whose column names come from the file, and so may need mapping to the canonical ones;
# the others name their columns in the parser
NAMED_COLUMN_FORMATS = ("csv", "parquet")


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
