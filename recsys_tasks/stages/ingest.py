"""Data in: extract the log, validate it, and turn it into sequences and a split."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from recsys_tasks.errors import DataValidationError
from recsys_tasks.prepare import build_sequences, split_for
from recsys_tasks.sources import SourceOptions, parse_column_map, read_interactions, read_item_attributes
from recsys_tasks.stages.context import RunContext
from recsys_tasks.validation import validate_interactions

log = logging.getLogger(__name__)

VOCABULARY = "vocabulary/items.json"  # item id -> token, stable across runs (new ids are appended)
PREPARED = "prepared.json"  # what prepare made of the log, in the run folder
LAST_GOOD_PROFILE = "validation/LAST_GOOD.json"  # volume and item shares of the last log that passed


def extract(run: RunContext) -> dict:
    """Read the configured source into the canonical frame, saved with the run."""
    config = run.config
    run.record("extracting", source_uri=config.source_uri)
    since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=config.window_days) if config.window_days else None
    options = SourceOptions(fmt=config.source_format, columns=parse_column_map(config.source_columns), since=since)
    frame = read_interactions(config.source_uri, options)
    key = run.path("interactions.parquet")
    run.store.write_frame(key, frame)
    log.info("extracted %d interactions from %s into %s", len(frame), config.source_uri, run.store.uri(key))
    out = {"interactions": key, "rows": len(frame), "item_attributes": None}
    if config.items_uri:
        attributes = read_item_attributes(config.items_uri)
        out["item_attributes"] = run.path("item_attributes.parquet")
        run.store.write_frame(out["item_attributes"], attributes)
        log.info("item attributes: %d rows for %d items from %s", len(attributes), attributes["item_id"].nunique(), config.items_uri)
    return out


def validate(run: RunContext, interactions: str) -> dict:
    """Run the expectation suite; a failure stops the run before anything is trained."""
    frame = run.store.read_frame(interactions)
    previous = run.store.read_json(LAST_GOOD_PROFILE) if run.store.exists(LAST_GOOD_PROFILE) else None
    report = validate_interactions(frame, run.config.validation, previous=previous)
    report_key = run.path("validation.json")
    report_uri = run.store.write_json(report_key, report.to_dict())
    docs = _keep_data_docs(run, report.data_docs_dir)
    log.info("%s\nvalidation report: %s\nGX Data Docs: %s", report.summary(), report_uri, docs)
    if not report.passed:
        run.record("failed_validation", message=report.summary())
        raise DataValidationError(f"{report.summary()}\nfull report: {report_uri}", report_uri=report_uri)
    run.store.write_json(LAST_GOOD_PROFILE, {**report.profile, "run_id": run.run_id})
    run.record("validated", message=report.summary() if report.warnings else None)
    return {"report": report_key, "rows": report.rows}


def _keep_data_docs(run: RunContext, folder: str | None) -> str | None:
    """Copy GX's HTML Data Docs from its temporary folder into the run's artifacts."""
    if not folder:
        return None
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        run.store.write_bytes(run.path(f"data_docs/{path.relative_to(root)}"), path.read_bytes())
    shutil.rmtree(root, ignore_errors=True)
    return run.store.uri(run.path("data_docs/index.html"))


def prepare(run: RunContext, interactions: str) -> dict:
    """De-duplicate, index ids, build per-user sequences and the leave-one-out split."""
    config = run.config
    frame = run.store.read_frame(interactions)
    known = run.store.read_json(VOCABULARY)["items"] if run.store.exists(VOCABULARY) else None
    seqs = build_sequences(frame, known, config.dedup_keep, config.min_user_events, config.min_item_events)
    if seqs.n_users == 0:
        raise DataValidationError(
            f"k-core filtering (users >= {config.min_user_events}, items >= {config.min_item_events} events) left no users"
        )
    run.store.write_json(VOCABULARY, {"items": seqs.item_ids})
    split = split_for(config, seqs)
    key = run.path("sequences.npz")
    run.store.write_bytes(key, seqs.to_bytes())
    summary = {
        "sequences": key,
        "users": seqs.n_users,
        "items": seqs.n_items,
        "events": int(len(seqs.items)),
        "eval_users": int(len(split.eval_users)),
        "rows_extracted": int(len(frame)),
        "first_event": frame["ts"].min().isoformat() if len(frame) else None,
        "last_event": frame["ts"].max().isoformat() if len(frame) else None,
    }
    run.store.write_json(run.path(PREPARED), summary)  # the data a model is trained on: its lineage
    log.info("prepared %s", summary)
    run.record("prepared", users=seqs.n_users, items=seqs.n_items)
    return summary
