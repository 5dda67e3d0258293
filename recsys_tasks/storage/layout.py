"""Where everything lives under the artifact root: the one owner of every artifact key.

    runs/<run key>/            one run's work: the extracted log, sequences, reports, shards...
    encoders/<run key>/        a pretrained encoder; encoders/LATEST.json names the newest
    models/<version>/          a model version (registry.py); models/PRODUCTION.json names production
    vocabulary/items.json      item id -> token, stable across runs (new ids are appended)
    validation/LAST_GOOD.json  volume and item shares of the last log that passed validation
    pending_status/<run key>.json  run verdicts waiting for the results database to come back
"""

from __future__ import annotations

import hashlib
import re

RUNS, ENCODERS, MODELS = "runs", "encoders", "models"
LATEST_ENCODER = f"{ENCODERS}/LATEST.json"
PRODUCTION = f"{MODELS}/PRODUCTION.json"
MODEL_MARKER = "model.pt"  # written last: a version the registry lists (by this file) is whole
# beside it in a version's folder
MODEL_CONFIG, MODEL_VOCABULARY, LINEAGE, METRICS = "config.json", "vocabulary.json", "lineage.json", "metrics.json"
VOCABULARY = "vocabulary/items.json"
LAST_GOOD_PROFILE = "validation/LAST_GOOD.json"  # before 0.3: one profile for every source (no longer read)
PENDING_STATUS = "pending_status"
ALERTS = "alerts"  # what recsys_watch has alerted about (one marker per published run / deadline)

# the files of a run folder
INTERACTIONS = "interactions.parquet"  # the extracted log in the canonical frame
EXTRACT = "extract.json"  # what was read, as of when, and the rows' fingerprint (a replay reads the same)
CATALOGUE = "catalogue.parquet"  # item_id, available, text
ATTRIBUTES = "item_attributes.parquet"  # item_id, attribute
VALIDATION = "validation.json"  # the expectation suite's report
PREPARED = "prepared.json"  # what prepare made of the log: the data a model is trained on
SEQUENCES = "sequences.npz"
EVALUATION = "evaluation.json"
GATE = "gate.json"
LISTS = "lists.npz"  # the users a lists=changed night makes lists for (pipeline/lists.py)
NIGHT = "night.json"  # the night's budget: what each training stage was given and why (pipeline/night.py)
REPORT = "report"  # the evaluation and outcomes reports (markdown, JSON, plots)
DATA_DOCS = "data_docs"  # GX's HTML Data Docs
FALLBACK = "companions/fallback.parquet"
SIMILAR = "companions/similar_items.parquet"
ITEMS = "companions/items.parquet"  # the catalogue snapshot readers join (recommendations_detailed)
SERVED = (f"{DATA_DOCS}/", f"{REPORT}/")  # what of a run folder the console may hand out


def run_key(run_id: str) -> str:
    """A path-safe folder name for an Airflow run id (which holds ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_") or "run"


def run_file(run_id: str, name: str) -> str:
    """Key of `name` in the run's folder."""
    return f"{RUNS}/{run_key(run_id)}/{name}"


def checkpoint_file(name: str) -> str:
    """In a run folder: the epoch checkpoint of that run's `name` training (resumed on retry)."""
    return f"checkpoints/{name}.pt"


def shard_file(index: int, of: int) -> str:
    """In a run folder: one generation shard's lists."""
    return f"recommendations/shard-{index:05d}-of-{of:05d}.parquet"


def pending_file(run_id: str) -> str:
    return f"{PENDING_STATUS}/{run_key(run_id)}.json"


def model_version_for(run_id: str) -> str:
    """Stable per run, so a retried fine-tune overwrites its own version instead of adding one."""
    return "v-" + hashlib.sha1(run_id.encode()).hexdigest()[:10]


BASELINE_PREFIX = "baseline-"  # a "version" that names a baseline scorer, not a trained model


def baseline_version(name: str) -> str:
    """What a night that publishes a baseline's lists records as their model version (`baseline-ease`)."""
    return f"{BASELINE_PREFIX}{name}"


def baseline_of(version: str | None) -> str | None:
    """`baseline-ease` -> `ease`; a trained model's version -> None."""
    return version[len(BASELINE_PREFIX) :] if version and version.startswith(BASELINE_PREFIX) else None


def refit_version(version: str) -> str:
    """The version shipped for a judged candidate: the same model refitted on every event."""
    return f"{version}-refit"


def model_file(version: str, name: str = MODEL_MARKER) -> str:
    """Key of `name` (model.pt, config.json, vocabulary.json, lineage.json, metrics.json,
    validation.json) in a model version's folder."""
    return f"{MODELS}/{version}/{name}"


def version_of(key: str) -> str | None:
    """The version whose marker `key` is (`models/<v>/model.pt` -> `<v>`), else None."""
    parts = key.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == MODELS and parts[2] == MODEL_MARKER else None


def encoder_file(run_id: str) -> str:
    return f"{ENCODERS}/{run_key(run_id)}/encoder.pt"


def encoder_run_key(key: str) -> str | None:
    """The run key of the folder holding an encoder (`encoders/<key>/encoder.pt` -> `<key>`)."""
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == ENCODERS else None


def last_good_profile(source_uri: str | None) -> str:
    """Where the last log of this source that passed validation is profiled: drift is judged
    against the same source only (a key from a hash of the URI, so no credential is in it)."""
    import hashlib

    digest = hashlib.sha1(str(source_uri or "").strip().encode()).hexdigest()[:16]
    return f"validation/sources/{digest}/LAST_GOOD.json"
