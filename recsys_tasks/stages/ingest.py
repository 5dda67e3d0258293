"""Data in: extract the log, validate it, and turn it into sequences and a split."""

from __future__ import annotations

import logging

from recsys_tasks.errors import DataValidationError
from recsys_tasks.prepare import build_sequences, leave_one_out
from recsys_tasks.sources import read_interactions
from recsys_tasks.stages.context import RunContext
from recsys_tasks.validation import validate_interactions

log = logging.getLogger(__name__)


def extract(run: RunContext) -> dict:
    """Read the configured source into the canonical frame, saved with the run."""
    run.record("extracting", source_uri=run.config.source_uri)
    frame = read_interactions(run.config.source_uri)
    key = run.path("interactions.parquet")
    run.store.write_frame(key, frame)
    log.info("extracted %d interactions from %s into %s", len(frame), run.config.source_uri, run.store.uri(key))
    return {"interactions": key, "rows": len(frame)}


def validate(run: RunContext, interactions: str) -> dict:
    """Run the expectation suite; a failure stops the run before anything is trained."""
    frame = run.store.read_frame(interactions)
    report = validate_interactions(frame)
    report_key = run.path("validation.json")
    report_uri = run.store.write_json(report_key, report.to_dict())
    log.info("%s\nvalidation report: %s", report.summary(), report_uri)
    if not report.passed:
        run.record("failed_validation", message=report.summary())
        raise DataValidationError(f"{report.summary()}\nfull report: {report_uri}", report_uri=report_uri)
    run.record("validated")
    return {"report": report_key, "rows": report.rows}


def prepare(run: RunContext, interactions: str) -> dict:
    """De-duplicate, index ids, build per-user sequences and the leave-one-out split."""
    frame = run.store.read_frame(interactions)
    seqs = build_sequences(frame)
    split = leave_one_out(seqs, run.config.min_sequence_length)
    key = run.path("sequences.npz")
    run.store.write_bytes(key, seqs.to_bytes())
    summary = {
        "sequences": key,
        "users": seqs.n_users,
        "items": seqs.n_items,
        "events": int(len(seqs.items)),
        "eval_users": int(len(split.eval_users)),
    }
    log.info("prepared %s", summary)
    run.record("prepared", users=seqs.n_users, items=seqs.n_items)
    return summary
