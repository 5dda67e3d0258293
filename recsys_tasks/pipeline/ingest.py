"""Data in: extract the log, validate it, and turn it into sequences and a split."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from recsys_tasks import PROGRESS
from recsys_tasks.config import PipelineConfig, parse_event_weights
from recsys_tasks.data.catalogue import check_catalogue, read_catalogue
from recsys_tasks.data.prepare import build_sequences, rows_fingerprint, split_for
from recsys_tasks.data.sources import SourceOptions, parse_column_map, read_interactions
from recsys_tasks.data.validation import ValidationReport, offline_html, validate_interactions
from recsys_tasks.errors import DataValidationError
from recsys_tasks.pipeline.context import RunContext
from recsys_tasks.redact import redact
from recsys_tasks.storage import layout
from recsys_tasks.storage.artifacts import ArtifactStore
from recsys_tasks.storage.layout import ATTRIBUTES, CATALOGUE, PREPARED, VOCABULARY

log = logging.getLogger(__name__)



CLOCK_SKEW = pd.Timedelta(minutes=5)  # an event stamped later than now + this is from the future: validation's


def read_source(config: PipelineConfig, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """The configured source as the canonical frame: format, column names and time window as
    configured. The DAG's extract and `recsys validate` both read through here.

    `as_of` (a run's logical date) anchors the window and leaves out the events that came after
    it, so a cleared run or a backfill reads what its date saw. Events stamped in the future of
    the wall clock stay in, for validation to reject."""
    now = pd.Timestamp.now(tz="UTC")
    end = as_of if as_of is not None else now
    since = end - pd.Timedelta(days=config.window_days) if config.window_days else None
    options = SourceOptions(fmt=config.source_format, columns=parse_column_map(config.source_columns), since=since)
    frame = read_interactions(config.source_uri, options)
    if as_of is not None:
        later = ((frame["ts"] >= as_of) & (frame["ts"] <= now + CLOCK_SKEW)).to_numpy()
        if later.any():
            attrs = dict(frame.attrs)
            frame = frame[~later].reset_index(drop=True)
            frame.attrs = attrs
            log.info("as of %s: %d later events left for later runs", as_of.isoformat(), int(later.sum()))
    return frame


def check_interactions(config: PipelineConfig, store: ArtifactStore, frame: pd.DataFrame,
                       column_mapping: dict | None = None, as_of: pd.Timestamp | None = None) -> ValidationReport:
    """The expectation suite plus the drift checks against the last log that passed.
    The DAG's validate and `recsys validate` both check through here; freshness and the
    future are judged as of `as_of` (the run's logical date), else now."""
    key = layout.last_good_profile(config.source_uri)
    previous = store.read_json(key) if store.exists(key) else None
    report = validate_interactions(frame, config.validation, now=as_of, previous=previous)
    report.column_mapping = dict(column_mapping or {})
    return report


def extract(run: RunContext) -> dict:
    """Read the configured source into the canonical frame, saved with the run."""
    config = run.config
    run.record("extracting", source_uri=config.source_uri)
    frame = read_source(config, run.as_of)
    mapping = frame.attrs.get("column_mapping") or {}
    key = run.path(layout.INTERACTIONS)
    run.store.write_frame(key, frame)
    fingerprint = rows_fingerprint(frame)
    log.info("extracted %d interactions from %s into %s (as of %s; rows %s)", len(frame), redact(config.source_uri),
             run.store.uri(key), run.as_of.isoformat() if run.as_of is not None else "now", fingerprint, extra=PROGRESS)
    if mapping:
        log.info("source columns used: %s", ", ".join(f"{c} <- {s}" for c, s in mapping.items()))
    out = {"interactions": key, "rows": len(frame), "rows_hash": fingerprint, "item_attributes": None,
           "column_mapping": mapping, "catalogue": None,
           "as_of": run.as_of.isoformat() if run.as_of is not None else None}
    run.store.write_json(run.path(layout.EXTRACT), {
        "source_uri": redact(config.source_uri), "as_of": out["as_of"], "window_days": config.window_days,
        "rows": len(frame), "rows_hash": fingerprint,
    })
    if config.items_uri:
        catalogue = read_catalogue(config.items_uri)
        try:
            for line in check_catalogue(catalogue, frame["item_id"], config.catalogue_max_missing):
                log.info("%s", line)
        except DataValidationError as error:
            run.record("failed_validation", message=str(error))
            raise
        out["catalogue"], out["item_attributes"] = run.path(CATALOGUE), run.path(ATTRIBUTES)
        run.store.write_frame(out["catalogue"], catalogue.items)  # versioned with the run
        run.store.write_frame(out["item_attributes"], catalogue.attributes)
        log.info("item attributes: %d rows for %d items from %s", len(catalogue.attributes),
                 catalogue.attributes["item_id"].nunique(), redact(config.items_uri))
    return out


def validate(run: RunContext, interactions: str, column_mapping: dict | None = None) -> dict:
    """Run the expectation suite; a failure stops the run before anything is trained."""
    frame = run.store.read_frame(interactions)
    report = check_interactions(run.config, run.store, frame, column_mapping, run.as_of)
    report_key = run.path(layout.VALIDATION)
    report_uri = run.store.write_json(report_key, report.to_dict())
    docs = _keep_data_docs(run, report.data_docs_dir)
    log.info("%s", report.summary(), extra=PROGRESS)
    log.info("validation report: %s\nGX Data Docs: %s", report_uri, docs)
    if not report.passed:
        run.record("failed_validation", message=report.summary())
        raise DataValidationError(f"{report.summary()}\nfull report: {report_uri}", report_uri=report_uri)
    run.store.write_json(layout.last_good_profile(run.config.source_uri), {**report.profile, "run_id": run.run_id})
    run.record("validated", message=report.summary() if report.warnings else None)
    return {"report": report_key, "rows": report.rows}


def _keep_data_docs(run: RunContext, folder: str | None) -> str | None:
    """Copy GX's HTML Data Docs from its temporary folder into the run's artifacts, offline."""
    if not folder:
        return None
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        body = path.read_bytes()
        if path.suffix == ".html":  # self-contained: nothing fetched from CDNs when opened
            body = offline_html(body.decode("utf-8")).encode("utf-8")
        run.store.write_bytes(run.path(f"{layout.DATA_DOCS}/{path.relative_to(root)}"), body)
    discard_data_docs(folder)
    return run.store.uri(run.path(f"{layout.DATA_DOCS}/index.html"))


def discard_data_docs(folder: str | None) -> None:
    """Remove GX's temporary Data Docs folder (the ephemeral context's whole temp root)."""
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def prepare(run: RunContext, interactions: str) -> dict:
    """De-duplicate, index ids, build per-user sequences and the leave-one-out split."""
    config = run.config
    frame = run.store.read_frame(interactions)
    known = run.store.read_json(VOCABULARY)["items"] if run.store.exists(VOCABULARY) else []
    if run.store.exists(run.path(CATALOGUE)):  # new items get a token before their first event
        catalogue = run.store.read_frame(run.path(CATALOGUE))
        listed = set(known)
        known = known + sorted(i for i in catalogue.loc[catalogue["available"], "item_id"] if i not in listed)
    below_min = 0
    if config.min_value is not None and "value" in frame:
        below = pd.to_numeric(frame["value"], errors="coerce") < config.min_value  # no value: an implicit positive
        frame, below_min = frame[~below], int(below.sum())
        log.info("min_value %s: %d events below it are not positives", config.min_value, below_min)
    keep = "all" if config.repeats == "allow" else config.dedup_keep
    seqs = build_sequences(frame, known, keep, config.min_user_events, config.min_item_events,
                           parse_event_weights(config.event_weights))
    if seqs.n_users == 0:
        raise DataValidationError(
            f"k-core filtering (users >= {config.min_user_events}, items >= {config.min_item_events} events) left no users"
        )
    run.store.write_json(VOCABULARY, {"items": seqs.item_ids})
    split = split_for(config, seqs)
    key = run.path(layout.SEQUENCES)
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
        # what events meant: reported with the run (the evaluation report's data line)
        "dedup_keep": config.dedup_keep,
        "event_weights": config.event_weights or "all 1",
        "weighted_targets": int((seqs.weights != 1).sum()) if seqs.weights is not None else 0,
        "min_value": config.min_value,
        "below_min_value": below_min,
    }
    run.store.write_json(run.path(PREPARED), summary)  # the data a model is trained on: its lineage
    log.info("prepared %d users, %d items, %d events (%d users evaluated)", seqs.n_users, seqs.n_items,
             len(seqs.items), len(split.eval_users), extra=PROGRESS)
    log.info("prepared %s", summary)
    run.record("prepared", users=seqs.n_users, items=seqs.n_items)
    return summary
