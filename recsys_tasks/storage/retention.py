"""Retention of run artifacts: what the results table has let go of, the artifact root lets go too.

Every run leaves a folder (`runs/<key>/`: the extracted log, sequences, checkpoints, shards,
reports), possibly an encoder (`encoders/<key>/`) and a model version (`models/<version>/`).
Without pruning they pile up night after night. A run's artifacts are kept while the run is:

- published and still retained in the results table (the run readers see, and the newest
  `retain_runs` published runs), or
- newer than the newest published run, or still in flight (not yet in a final status): the
  newest `retain_runs` of those, so a failure can be inspected and an in-flight run (say the
  weekly pretraining) never loses its inputs under it.

Whatever retention decides, these are never removed: the encoder `encoders/LATEST.json` names,
every model version `models/PRODUCTION.json` names now or in its history (rollback targets),
and the model of any kept run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from recsys_tasks import db
from recsys_tasks.db import Tables
from recsys_tasks.storage import layout
from recsys_tasks.storage.artifacts import ArtifactStore
from recsys_tasks.storage.layout import run_key
from recsys_tasks.storage.registry import judged_version, production

log = logging.getLogger(__name__)

# statuses a run ends in; any other status means it is still running (or died without a word)
FINAL_STATUSES = frozenset({"published", "failed_validation", "rejected", "failed", "superseded"})


def runs_to_keep(engine: sa.Engine, tables: Tables, retain_runs: int) -> dict[str, str | None]:
    """Run id -> its model version (None when it has none yet) of every run whose artifacts stay."""
    rows, current = db.run_dates(engine, tables)
    # dates compare as text: ISO 8601 on SQLite, datetimes with one offset on PostgreSQL
    published = sorted((r for r in rows if r["published_at"] is not None), key=lambda r: str(r["published_at"]), reverse=True)
    keep = {r["run_id"] for r in published[:retain_runs]} | ({current} if current else set())
    newest_start = max((str(r["started_at"] or "") for r in published), default="")
    unfinished = [
        r for r in rows
        if r["published_at"] is None and (str(r["started_at"] or "") > newest_start or r["status"] not in FINAL_STATUSES)
    ]
    unfinished.sort(key=lambda r: str(r["started_at"] or ""), reverse=True)
    keep |= {r["run_id"] for r in unfinished[:retain_runs]}
    versions = {r["run_id"]: r["model_version"] for r in rows}
    return {run_id: versions.get(run_id) for run_id in keep}


def _production_versions(store: ArtifactStore) -> set[str]:
    pointer = production(store)
    if pointer is None:
        return set()
    return {pointer["model_version"], *(p["model_version"] for p in pointer.get("previous", []))}


def _latest_encoder_key(store: ArtifactStore) -> str | None:
    """The run key of the folder holding the encoder LATEST.json names (`encoders/<key>/encoder.pt`)."""
    if not store.exists(layout.LATEST_ENCODER):
        return None
    return layout.encoder_run_key(str(store.read_json(layout.LATEST_ENCODER).get("encoder") or ""))


def _model_run_key(store: ArtifactStore, version: str) -> str | None:
    lineage = layout.model_file(version, layout.LINEAGE)
    if not store.exists(lineage):
        return None
    run_id = store.read_json(lineage).get("run_id")
    return run_key(run_id) if run_id else None


def _prune(store: ArtifactStore, keep: set[str], keep_models: Iterable[str] = ()) -> dict[str, Any]:
    """Remove what `prune_runs` promises; returns the removed folders with their objects and bytes."""
    removed: list[str] = []
    objects = freed = 0

    def drop(folder: str) -> None:
        nonlocal objects, freed
        gone = store.delete_prefix(folder)
        removed.append(folder)
        objects, freed = objects + gone.objects, freed + gone.bytes

    for key in store.folders(layout.RUNS):
        if key not in keep:
            drop(f"{layout.RUNS}/{key}")
    latest = _latest_encoder_key(store)
    for key in store.folders(layout.ENCODERS):
        if key not in keep and key != latest:
            drop(f"{layout.ENCODERS}/{key}")
    protected = _production_versions(store) | set(keep_models)
    # a refit kept is judged (and warm-started from) by its twin: keep the twin with it
    protected |= {judged_version(store, v) for v in protected}
    for version in store.folders(layout.MODELS):
        # a version without lineage is half-written (or from an in-flight run: the caller names those)
        if version not in protected and _model_run_key(store, version) not in keep:
            drop(f"{layout.MODELS}/{version}")
    return {"removed": removed, "objects_removed": objects, "bytes_freed": freed}


def prune_runs(store: ArtifactStore, keep: set[str], keep_models: Iterable[str] = ()) -> list[str]:
    """Remove the artifacts of every run whose key is not in `keep`; returns the folders removed.

    That is `runs/<key>/`, `encoders/<key>/` unless `encoders/LATEST.json` names it, and
    `models/<version>/` unless production names it (now or in its history), its lineage names a
    kept run, or it is in `keep_models` (versions of kept runs whose lineage is not written yet).
    """
    return _prune(store, keep, keep_models)["removed"]


def apply_retention(store: ArtifactStore, engine: sa.Engine, tables: Tables, retain_runs: int) -> dict[str, Any]:
    """Prune the artifact root down to the runs `runs_to_keep` names (call after a publish is recorded).

    Returns the kept run ids, the folders removed, and how many objects and bytes went.
    """
    kept = runs_to_keep(engine, tables, retain_runs)
    # a kept run's version is known before its lineage is written (and before the run table hears of it)
    versions = {v for v in kept.values() if v} | {layout.model_version_for(run_id) for run_id in kept}
    versions |= {layout.refit_version(v) for v in versions}
    outcome = _prune(store, {run_key(run_id) for run_id in kept}, versions)
    log.info(
        "retention: kept the artifacts of %d runs, removed %d folders (%d objects, %.1f MB)",
        len(kept), len(outcome["removed"]), outcome["objects_removed"], outcome["bytes_freed"] / 1e6,
    )
    return {"kept_runs": sorted(kept), **outcome}
