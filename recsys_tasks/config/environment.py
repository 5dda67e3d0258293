"""The deployment's environment: the one module of the library that reads `os.environ`.

Deployment-level settings (where data comes from, where results and artifacts go, how tasks
retry, where alerts go) are RECSYS_* variables; run-level ones are params (`params.py`).

| variable | what it sets |
| --- | --- |
| RECSYS_HOME | folder of the embedded default's databases and artifacts (default ./var) |
| RECSYS_SOURCE_URI, RECSYS_SOURCE_FORMAT, RECSYS_SOURCE_COLUMNS, RECSYS_ITEMS_URI | the source |
| RECSYS_DB_URL, RECSYS_ARTIFACT_ROOT | the results database and the artifact root |
| RECSYS_S3_ENDPOINT_URL (or AWS_ENDPOINT_URL) | an S3-compatible endpoint such as MinIO |
| RECSYS_TASK_RETRIES, RECSYS_RETRY_DELAY_S, RECSYS_TASK_TIMEOUT_MIN, RECSYS_RUN_TIMEOUT_H | retries and timeouts |
| RECSYS_GPU_QUEUE, RECSYS_GPU_POOL | where the training tasks run |
| RECSYS_SOURCE_ASSET | the nightly runs when this Asset is updated, instead of at 02:00 |
| RECSYS_ALERT_WEBHOOK, RECSYS_ALERT_SMTP | where failure notices go |
| RECSYS_TEXT_ENCODER | a local sentence-encoder folder for new items' text |
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from recsys_tasks.config.settings import PipelineConfig
from recsys_tasks.errors import ConfigError

WORKER_FLAG = "RECSYS_DISTRIBUTED_WORKER"  # set in training processes, so a stage does not launch again


# Every variable this module reads: name -> (default, meaning). docs/reference.md is generated
# from this table and the run params (`recsys reference`); a test fails on a variable missing here.
VARIABLES: dict[str, tuple[str, str]] = {
    "RECSYS_HOME": ("./var", "folder of the embedded default's databases and artifacts"),
    "RECSYS_SOURCE_URI": ("sqlite:///$RECSYS_HOME/recsys.db?table=interactions", "where interactions come from"),
    "RECSYS_SOURCE_FORMAT": ("from the URI", "csv, parquet, movielens-100k, movielens-1m, movielens-csv or sequence"),
    "RECSYS_SOURCE_COLUMNS": ("canonical names", "the source's column names, e.g. user_id=uid,item_id=sku,ts=time"),
    "RECSYS_ITEMS_URI": ("unset", "item attributes or catalogue (JSON, CSV or Parquet)"),
    "RECSYS_DB_URL": ("sqlite:///$RECSYS_HOME/recsys.db", "results database (the `recsys_db` connection when unset)"),
    "RECSYS_ARTIFACT_ROOT": ("$RECSYS_HOME/artifacts", "artifacts: a folder or s3://bucket/prefix"),
    "RECSYS_S3_ENDPOINT_URL": ("unset (AWS_ENDPOINT_URL, else AWS)", "an S3-compatible endpoint such as MinIO"),
    "RECSYS_S3_MAX_ATTEMPTS": ("5", "attempts per S3 request, sources and artifacts alike (botocore's standard retry mode)"),
    "RECSYS_TASK_RETRIES": ("2", "retries of a failed task (bad data and bad params never retry)"),
    "RECSYS_RETRY_DELAY_S": ("120", "seconds between retries"),
    "RECSYS_TASK_TIMEOUT_MIN": ("240", "a task running longer fails (and retries)"),
    "RECSYS_RUN_TIMEOUT_H": ("20", "a nightly run not finished by then is failed"),
    "RECSYS_GPU_QUEUE": ("default", "the Celery queue of pretrain and finetune (gpu in docker-compose)"),
    "RECSYS_GPU_POOL": ("default_pool", "the pool of pretrain and finetune (gpu in docker-compose)"),
    "RECSYS_SOURCE_ASSET": ("unset (02:00 UTC)", "schedule the nightly on this Asset's updates instead of the clock"),
    "RECSYS_ALERT_WEBHOOK": ("unset", "a URL that gets a JSON POST on a failure, a rejection, stale lists, a missed deadline"),
    "RECSYS_ALERT_SMTP": ("unset", "smtp://[user:password@]host:port?to=... for the same notices by e-mail"),
    "RECSYS_MAX_LIST_AGE_H": ("30", "recsys_watch alerts when the lists readers see are older than this many hours"),
    "RECSYS_PUBLISH_DEADLINE": ("06:00", "UTC time each night's lists are due by (recsys_watch alerts after it); off: none"),
    "RECSYS_STATSD_HOST": ("unset ([metrics] statsd_host when statsd_on)", "send per-run metrics over StatsD to this host"),
    "RECSYS_STATSD_PORT": ("8125", "the StatsD port"),
    "RECSYS_STATSD_PREFIX": ("recsys", "prefix of every metric name"),
    "RECSYS_TEXT_ENCODER": ("unset (TF-IDF + SVD)", "a local sentence-transformers / Hugging Face model folder"),
    "RECSYS_CONSOLE_ORIGINS": ("[api] base_url", "origins the console accepts changes from, comma-separated"),
    "RECSYS_GIT_COMMIT": ("the checkout's HEAD", "the commit images are built from (recsys --version, lineage)"),
    WORKER_FLAG: ("set by the launcher", "marks a training process started by the distributed launcher (internal)"),
}


def is_set(name: str) -> bool:
    return name in os.environ


def set_default(name: str, value: str) -> None:
    os.environ.setdefault(name, value)


def recsys_home() -> Path:
    """Folder holding the embedded default's databases and artifacts."""
    return Path(os.environ.get("RECSYS_HOME", Path.cwd() / "var")).resolve()


def default_config() -> PipelineConfig:
    """The embedded default: SQLite source and results, a local artifact folder."""
    home = recsys_home()
    db_url = f"sqlite:///{home / 'recsys.db'}"
    return PipelineConfig(source_uri=f"{db_url}?table=interactions", db_url=db_url, artifact_root=str(home / "artifacts"))


def config_from_env(environ: Mapping[str, str] | None = None) -> PipelineConfig:
    env = os.environ if environ is None else environ
    overrides = {
        "source_uri": env.get("RECSYS_SOURCE_URI"),
        "db_url": env.get("RECSYS_DB_URL"),
        "artifact_root": env.get("RECSYS_ARTIFACT_ROOT"),
        "source_format": env.get("RECSYS_SOURCE_FORMAT"),
        "source_columns": env.get("RECSYS_SOURCE_COLUMNS"),
        "items_uri": env.get("RECSYS_ITEMS_URI"),
    }
    return dataclasses.replace(default_config(), **{k: v for k, v in overrides.items() if v})


@dataclass(frozen=True)
class Orchestration:
    """How the DAGs run their tasks."""

    task_retries: int = 2
    retry_delay_s: int = 120
    # a task hung on a lock or a dead mount fails (and retries) instead of holding the run for ever
    task_timeout_min: float = 240.0
    # a nightly run that has not finished by the next night's start is failed, not left running
    run_timeout_h: float = 20.0
    gpu_queue: str = "default"  # "gpu" in docker-compose
    gpu_pool: str = "default_pool"  # "gpu" in docker-compose
    source_asset: str = ""  # schedule the nightly on this Asset's updates instead of the clock

    @classmethod
    def from_env(cls) -> Orchestration:
        read = {
            "task_retries": ("RECSYS_TASK_RETRIES", int), "retry_delay_s": ("RECSYS_RETRY_DELAY_S", int),
            "task_timeout_min": ("RECSYS_TASK_TIMEOUT_MIN", float), "run_timeout_h": ("RECSYS_RUN_TIMEOUT_H", float),
            "gpu_queue": ("RECSYS_GPU_QUEUE", str), "gpu_pool": ("RECSYS_GPU_POOL", str),
            "source_asset": ("RECSYS_SOURCE_ASSET", str),
        }
        values = {name: kind(os.environ[var].strip()) for name, (var, kind) in read.items() if os.environ.get(var, "").strip()}
        return cls(**values)


def alert_targets() -> tuple[str | None, str | None]:
    """(webhook URL, SMTP URL) failure notices go to; None where unset."""
    return os.environ.get("RECSYS_ALERT_WEBHOOK") or None, os.environ.get("RECSYS_ALERT_SMTP") or None


def max_list_age_hours() -> float:
    return float(os.environ.get("RECSYS_MAX_LIST_AGE_H") or 30)


def publish_deadline() -> tuple[int, int] | None:
    """(hour, minute) UTC of RECSYS_PUBLISH_DEADLINE (default 06:00); None when `off`."""
    text = (os.environ.get("RECSYS_PUBLISH_DEADLINE") or "06:00").strip().lower()
    if text in {"off", "none", "0"}:
        return None
    hour, _, minute = text.partition(":")
    try:
        when = int(hour), int(minute or 0)
    except ValueError:
        when = (-1, -1)
    if not (0 <= when[0] < 24 and 0 <= when[1] < 60):
        raise ConfigError(f"RECSYS_PUBLISH_DEADLINE={text!r}: use HH:MM (UTC), or off")
    return when


def code_commit() -> str:
    """The commit this code is: RECSYS_GIT_COMMIT (baked into the image at build time), else
    the checkout's HEAD (with "-dirty" for uncommitted changes), else "unknown"."""
    baked = os.environ.get("RECSYS_GIT_COMMIT", "").strip()
    if baked:
        return baked
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def code_version() -> str:
    """`0.2.0+<commit>`: what `recsys --version` prints and every model's lineage records."""
    from recsys_tasks import __version__

    return f"{__version__}+{code_commit()}"


def console_origins() -> list[str]:
    """Origins (`https://recsys.example.com`) the console accepts changes from, besides the API
    server's own loopback address: RECSYS_CONSOLE_ORIGINS (comma-separated), else Airflow's
    `[api] base_url` (AIRFLOW__API__BASE_URL)."""
    listed = os.environ.get("RECSYS_CONSOLE_ORIGINS") or os.environ.get("AIRFLOW__API__BASE_URL") or ""
    return [o.strip() for o in listed.split(",") if o.strip()]


def s3_endpoint_url() -> str | None:
    return os.environ.get("RECSYS_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None


S3_MAX_ATTEMPTS = 5  # one try and four retries, botocore's standard mode (jittered exponential backoff)


def s3_max_attempts() -> int:
    return int(os.environ.get("RECSYS_S3_MAX_ATTEMPTS") or S3_MAX_ATTEMPTS)


def s3_client(endpoint_url: str | None = None):
    """The one S3 client every reader and writer uses (sources, artifacts, the registry):
    botocore's standard retry mode retries 5xx, throttling and dropped connections
    (RECSYS_S3_MAX_ATTEMPTS attempts in all, default 5) and never a refusal such as 403."""
    import boto3  # only deployments on S3 pay for the import
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": s3_max_attempts()}, connect_timeout=10, read_timeout=60)
    return boto3.client("s3", endpoint_url=endpoint_url or s3_endpoint_url(), config=config)


def text_encoder_path() -> str:
    return os.environ.get("RECSYS_TEXT_ENCODER", "").strip()


def offline_hub() -> None:
    """Hugging Face libraries never download: models are read from disk."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def local_rank() -> int | None:
    """This process's GPU index under torch's distributed launcher, None outside it."""
    return int(os.environ["LOCAL_RANK"]) if "LOCAL_RANK" in os.environ else None


def process_rank() -> str:
    return os.environ.get("RANK", "?")


def is_distributed_worker() -> bool:
    return os.environ.get(WORKER_FLAG) == "1"


def worker_environment() -> dict[str, str]:
    """The environment of launched training processes: marked as workers, one thread each unless set."""
    return {**os.environ, WORKER_FLAG: "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
