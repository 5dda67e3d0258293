"""The model registry under the artifact root: versions, their lineage, and production.

Each version lives in `models/<version>/` (checkpoint, config, vocabulary, lineage, metrics).
`models/PRODUCTION.json` names the production version and keeps the versions it replaced, so a
rollback is one write of one small object: atomic on a local folder and on S3 alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from recsys_tasks.errors import ArtifactNotFoundError, RecsysError
from recsys_tasks.storage import layout
from recsys_tasks.storage.artifacts import ArtifactStore

PRODUCTION = layout.PRODUCTION


def production(store: ArtifactStore) -> dict[str, Any] | None:
    """The production pointer: {model_version, run_id, promoted_at, previous: [...]}, or None."""
    return store.read_json(PRODUCTION) if store.exists(PRODUCTION) else None


def production_version(store: ArtifactStore) -> str | None:
    pointer = production(store)
    return pointer["model_version"] if pointer else None


def production_for(store: ArtifactStore, run_id: str) -> str | None:
    """The production version as run `run_id` found it: the newest pointer entry another run
    promoted. A cleared and re-run night therefore stands against what it stood against the
    first time, not against its own model."""
    pointer = production(store)
    if pointer is None:
        return None
    for entry in [pointer, *reversed(pointer.get("previous", []))]:
        if entry.get("run_id") != run_id and store.exists(layout.model_file(entry["model_version"])):
            return entry["model_version"]
    return None


def judged_version(store: ArtifactStore, version: str) -> str:
    """The version a gate judges `version` by: for a refit (trained on every event, the held-out
    ones too), the candidate it is the refit of, which never saw any user's last two events as
    of its night, so tonight's held-out events are unseen by it as by tonight's candidate."""
    key = layout.model_file(version, layout.LINEAGE)
    twin = store.read_json(key).get("refit_of") if store.exists(key) else None
    return twin if twin and store.exists(layout.model_file(twin)) else version


def _read_if_there(store: ArtifactStore, key: str) -> dict[str, Any]:
    return store.read_json(key) if store.exists(key) else {}


def describe(store: ArtifactStore, version: str) -> dict[str, Any]:
    """Lineage and metrics of one version."""
    if not store.exists(layout.model_file(version)):
        raise ArtifactNotFoundError(f"no model version {version!r} under {store.uri(layout.MODELS)}")
    lineage = _read_if_there(store, layout.model_file(version, layout.LINEAGE))
    metrics = _read_if_there(store, layout.model_file(version, layout.METRICS))
    lineage.pop("history", None)
    return {"model_version": version, "production": version == production_version(store), **lineage, "metrics": metrics}


def list_versions(store: ArtifactStore) -> list[dict[str, Any]]:
    versions = sorted({v for key in store.list(layout.MODELS) if (v := layout.version_of(key))})
    return sorted((describe(store, v) for v in versions), key=lambda d: d.get("created_at") or "", reverse=True)


def promote(store: ArtifactStore, version: str, run_id: str | None = None, reason: str = "promoted") -> dict[str, Any]:
    """Make `version` production, remembering the one it replaces."""
    describe(store, version)  # fails clearly for an unknown version
    current = production(store)
    previous = list(current.get("previous", [])) if current else []
    if current and current["model_version"] != version:
        previous.append({k: current[k] for k in ("model_version", "run_id", "promoted_at")})
    pointer = {
        "model_version": version,
        "run_id": run_id,
        "promoted_at": datetime.now(UTC).isoformat(),
        "reason": reason,
        "previous": previous[-20:],
    }
    store.write_json(PRODUCTION, pointer)
    return pointer


def rollback(store: ArtifactStore) -> dict[str, Any]:
    """Return production to the version it had before the current one."""
    current = production(store)
    if not current or not current.get("previous"):
        raise RecsysError("nothing to roll back to: production has no earlier version")
    earlier = current["previous"][-1]
    pointer = {
        "model_version": earlier["model_version"],
        "run_id": earlier["run_id"],
        "promoted_at": datetime.now(UTC).isoformat(),
        "reason": f"rollback from {current['model_version']}",
        "previous": current["previous"][:-1],
    }
    store.write_json(PRODUCTION, pointer)
    return pointer
