"""Erasure: forget users everywhere the pipeline keeps them (`recsys forget-user ID...`).

Where users live, and what happens there:

- the results database: rows with the user's `user_id` in every table the project owns
  (`db.Tables`) are deleted, the published rows of every retained run included (a
  DELETE on the results table reaches its run partitions on PostgreSQL), as are leftover
  staging tables of a killed load; the run table's free text (validation examples quoted in
  `message`) is scrubbed;
- the artifact root: Parquet files with a `user_id` column (`runs/<run>/interactions.parquet`,
  `recommendations/shard-*.parquet`) are rewritten without the user's rows, `sequences.npz`
  without the user's sequence, and JSON and text reports (validation reports and their copies
  beside models, GX Data Docs) have the id replaced by `[erased]`. Item-keyed parts (the item
  vocabulary, item counts) are left alone: an item may carry the same id as a user.

A final pass reads every object and table again; whatever still mentions a user is listed
under `remaining` (binary objects, where a raw byte match may be an unrelated string, under
`binary_mentions`). The source log is the application's and is not touched: the users must be
deleted there too, or the next nightly run brings them back.

Ids are matched whole: `u1` does not match inside `u12`. An id that is a plain number (`42`)
also matches that number standing alone in a report, which is then scrubbed too.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from recsys_tasks import db
from recsys_tasks.config import PipelineConfig
from recsys_tasks.data.prepare import Sequences
from recsys_tasks.data.sources import parse_column_map, parse_sql_source
from recsys_tasks.storage.artifacts import ArtifactStore
from recsys_tasks.storage.deployment import Deployment

log = logging.getLogger(__name__)

ERASED = "[erased]"
ITEM_KEYED = frozenset({"items", "item_ids", "item_counts"})  # JSON parts holding item ids only
TEXT_SUFFIXES = (".md", ".txt", ".log", ".csv", ".tsv")  # reports that may quote data (not code: .js, .css)
HTML_SUFFIXES = (".html", ".htm")
USER_DATA_SUFFIXES = (".parquet", ".npz", ".json", *HTML_SUFFIXES, *TEXT_SUFFIXES)  # what erasure rewrites
_HTML_CODE = re.compile(r"(<script\b.*?</script\s*>|<style\b.*?</style\s*>|<[^>]*>)", re.IGNORECASE | re.DOTALL)


def id_pattern(user_ids: Iterable[str]) -> re.Pattern[str]:
    """Any of the ids, whole: not next to a character an id could go on with (`u12`, `xu1`,
    `u1.5`), though a full stop after it (`... user u1.`) still ends it."""
    alternatives = "|".join(re.escape(u) for u in sorted(set(user_ids), key=len, reverse=True))
    word = "A-Za-z0-9_"
    return re.compile(rf"(?<![{word}\-])(?<![{word}]\.)(?:{alternatives})(?![{word}\-])(?!\.[{word}])")


def forget_users(config: PipelineConfig, user_ids: list[str]) -> dict[str, Any]:
    """Remove these users from the results database and the artifact root; counts per place."""
    ids = sorted({str(u) for u in user_ids if str(u).strip()})
    if not ids:
        raise ValueError("forget_users needs at least one non-empty user id")
    pattern = id_pattern(ids)
    with Deployment(config) as dep:
        database = db.delete_users(dep.engine, dep.tables, ids, pattern, ERASED)
        artifacts = _forget_in_artifacts(dep.store, ids, pattern)
        remaining = [f"table {t}" for t in db.tables_mentioning(dep.engine, dep.tables, ids)]
        scan = _final_scan(dep.store, ids, pattern)
    outcome = {
        "users": len(ids),
        "database": database,
        "artifacts": artifacts,
        "objects_scanned": scan["scanned"],
        "remaining": remaining + scan["remaining"],
        "binary_mentions": scan["binary"],
        "notes": _notes(config, ids),
    }
    log.info("forgot %d users: database %s, artifacts %s, remaining %s", len(ids), database, artifacts, outcome["remaining"])
    return outcome


def without_users(seqs: Sequences, ids: Iterable[str]) -> Sequences | None:
    """The sequences with these users' sequences removed; None when none of them is there."""
    drop = np.isin(np.asarray(seqs.user_ids, dtype=object), np.asarray(list(ids), dtype=object))
    if not drop.any():
        return None
    keep = np.flatnonzero(~drop)
    lengths = seqs.lengths()
    owner = np.repeat(np.arange(seqs.n_users), lengths)  # (n_events,) user of each event
    return Sequences(
        user_ids=[seqs.user_ids[u] for u in keep],
        item_ids=seqs.item_ids,
        offsets=np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64),
        items=seqs.items[~drop[owner]],
        last_ts=seqs.last_ts[keep] if seqs.last_ts is not None else None,
        weights=seqs.weights[~drop[owner]] if seqs.weights is not None else None,
    )


def scrub_json(value: Any, pattern: re.Pattern) -> Any:
    """The value with every id in its strings replaced, entries keyed by an id dropped, and
    item-keyed parts left as they are."""
    if isinstance(value, str):
        return pattern.sub(ERASED, value)
    if isinstance(value, list):
        return [scrub_json(v, pattern) for v in value]
    if isinstance(value, dict):
        return {
            k: v if k in ITEM_KEYED else scrub_json(v, pattern)
            for k, v in value.items() if not pattern.fullmatch(k)
        }
    return value


def scrub_html(text: str, pattern: re.Pattern) -> str:
    """Replace ids in the page's text, never inside tags, scripts or styles."""
    parts = _HTML_CODE.split(text)
    return "".join(p if i % 2 else pattern.sub(ERASED, p) for i, p in enumerate(parts))


def _parquet_user_rows(data: bytes, ids: list[str]) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The frame and a mask of the users' rows, for Parquet with a user_id column; else None."""
    if "user_id" not in pq.ParquetFile(io.BytesIO(data)).schema_arrow.names:
        return None
    frame = pd.read_parquet(io.BytesIO(data))
    return frame, frame["user_id"].astype(str).isin(ids).to_numpy()


def _erase(key: str, data: bytes, ids: list[str], pattern: re.Pattern) -> tuple[bytes | None, str, int]:
    """New bytes for one object (None: unchanged), the kind of place, and how much was removed."""
    if key.endswith(".parquet"):
        try:
            found = _parquet_user_rows(data, ids)
        except (pa.ArrowException, ValueError):
            return None, "binary", 0  # unreadable: the final scan looks at its raw bytes
        if found is None or not found[1].any():
            return None, "parquet", 0
        frame, mask = found
        buffer = io.BytesIO()
        frame[~mask].to_parquet(buffer, index=False)
        kind = "interactions_rows" if key.endswith("interactions.parquet") else (
            "recommendation_rows" if "/recommendations/" in key else "other_parquet_rows"
        )
        return buffer.getvalue(), kind, int(mask.sum())
    if key.endswith(".npz"):
        try:
            seqs = Sequences.from_bytes(data)
        except (KeyError, ValueError, OSError):
            return None, "binary", 0  # some other array file
        pruned = without_users(seqs, ids)
        return (
            (None, "sequence_users", 0)
            if pruned is None
            else (pruned.to_bytes(), "sequence_users", seqs.n_users - pruned.n_users)
        )
    if key.endswith(".json"):
        try:
            value = json.loads(data)
        except ValueError:
            return _erase_text(data, pattern, scrub=lambda t: pattern.sub(ERASED, t), kind="json_files")
        scrubbed = scrub_json(value, pattern)
        if scrubbed == value:
            return None, "json_files", 0
        return json.dumps(scrubbed, indent=2, sort_keys=True, default=str).encode(), "json_files", 1
    if key.endswith(HTML_SUFFIXES):
        return _erase_text(data, pattern, scrub=lambda t: scrub_html(t, pattern), kind="html_files")
    if key.endswith(".csv") and b"user_id" in data.split(b"\n", 1)[0]:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
        mask = frame["user_id"].isin(ids).to_numpy()
        return (frame[~mask].to_csv(index=False).encode() if mask.any() else None), "csv_rows", int(mask.sum())
    if key.endswith(TEXT_SUFFIXES):
        return _erase_text(data, pattern, scrub=lambda t: pattern.sub(ERASED, t), kind="text_files")
    return None, "binary", 0


def _erase_text(data: bytes, pattern: re.Pattern, scrub: Any, kind: str) -> tuple[bytes | None, str, int]:
    text = data.decode("utf-8", errors="surrogateescape")
    new = scrub(text)
    return (None, kind, 0) if new == text else (new.encode("utf-8", errors="surrogateescape"), kind, 1)


def _forget_in_artifacts(store: ArtifactStore, ids: list[str], pattern: re.Pattern) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for key in (k for k in store.list() if k.endswith(USER_DATA_SUFFIXES)):  # checkpoints, images: scan only
        new, kind, removed = _erase(key, store.read_bytes(key), ids, pattern)
        if new is not None:
            store.write_bytes(key, new)
            counts[kind] += removed
            counts["objects_rewritten"] += 1
            log.info("erasure: rewrote %s (%s: %d)", store.uri(key), kind, removed)
    return dict(counts)


def _final_scan(store: ArtifactStore, ids: list[str], pattern: re.Pattern) -> dict[str, Any]:
    """Read every object again: what the erasure would still change is a remaining mention."""
    remaining, binary = [], []
    raw = re.compile(pattern.pattern.encode())  # the same whole-id match, over bytes
    keys = store.list()
    for key in keys:
        data = store.read_bytes(key)
        new, kind, _ = _erase(key, data, ids, pattern)
        if new is not None:
            remaining.append(key)
        elif kind == "binary" and raw.search(data):
            binary.append(key)
    return {"scanned": len(keys), "remaining": remaining, "binary": binary}


def _notes(config: PipelineConfig, ids: list[str]) -> list[str]:
    notes = [
        "the interaction source is the application's log and was not changed: delete these users there too, "
        "or the next nightly run brings them back",
        "a run in flight while this ran may still publish these users: run forget-user again after it ends",
        "Airflow's own task logs are not searched (a failed validation may quote ids there)",
    ]
    sql = parse_sql_source(config.source_uri)
    if sql is None:
        return notes
    column = dict(parse_column_map(config.source_columns)).get("user_id", "user_id")
    try:
        rows = db.count_source_events(sql.url, sql.table, column, ids)
        notes.insert(0, f"the source table {sql.table} still holds {rows} events of these users")
    except sa.exc.SQLAlchemyError as error:
        log.warning("could not count the users' events in the source table %s: %s", sql.table, error)
    return notes
