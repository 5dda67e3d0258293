"""The one module of recsys_tasks that knows Airflow.

What the DAG files share: default args, the trigger form (built from the settings' own
declarations), and the task groups that call stages by name. At run time it turns a task's
Airflow context (run id, DAG params, the `recsys_db` connection) into a plain `RunContext`,
calls a stage by name, and maps stage errors onto Airflow's retry semantics: errors another
attempt cannot fix (bad data, bad params) fail the task at once. It records and notifies task
failures, and runs a DAG in-process for `recsys run`. Airflow and the stages (torch, GX) are
imported inside functions, so a DAG file importing this module parses fast.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recsys_tasks import interrupt
from recsys_tasks.clock import as_utc
from recsys_tasks.config import PARAMS, PipelineConfig, config_from_env, environment, with_params
from recsys_tasks.errors import RecsysError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _connection_db_url() -> str | None:
    """The `recsys_db` Airflow connection, when one is defined, as a SQLAlchemy URL.

    Inside a task the Task SDK resolves it; outside one (the `recsys` CLI) Airflow's own
    secrets backends do, so the CLI reads and writes the same database as the DAG."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        uri = Connection.get("recsys_db").get_uri()
    except AirflowNotFoundException:
        # inside a task the Task SDK's answer is final (it asked every secrets backend); only
        # the CLI, outside any task, reads the metadata database itself
        uri = None if _inside_a_task() else _metastore_connection_uri("recsys_db")
    if uri is None:
        return None
    for prefix in ("postgres://", "postgresql://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    return uri


def _inside_a_task() -> bool:
    """Whether this process runs a task (dag.test included): the Task SDK's supervisor is there."""
    import sys

    return hasattr(sys.modules.get("airflow.sdk.execution_time.task_runner"), "SUPERVISOR_COMMS")


def _metastore_connection_uri(conn_id: str) -> str | None:
    """A connection stored in the metadata database, read the way the `airflow` CLI does."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models import Connection

    try:
        return Connection.get_connection_from_secrets(conn_id).get_uri()
    except AirflowNotFoundException:
        return None
    except Exception as exc:  # no metadata database here (e.g. a worker that may not reach it)
        log.debug("could not look up connection %s in the metadata database: %s", conn_id, exc)
        return None


def config_for(params: dict[str, Any]) -> PipelineConfig:
    """The run's config: environment, then the `recsys_db` connection (when RECSYS_DB_URL is
    unset), then the params. Raises ConfigError for a bad param. Every password in it is
    registered with Airflow's secrets masker, so task logs (tracebacks included) show ***."""
    config = config_from_env()
    if not environment.is_set("RECSYS_DB_URL") and (db_url := _connection_db_url()):
        config = dataclasses.replace(config, db_url=db_url)
    config = with_params(config, params)
    _mask_passwords(config.db_url, config.source_uri, config.items_uri)
    return config


def _mask_passwords(*urls: str | None) -> None:
    from urllib.parse import unquote, urlsplit

    from airflow.sdk.log import mask_secret

    for url in urls:
        if url and "://" in url and (password := urlsplit(url).password):
            mask_secret(password)
            mask_secret(unquote(password))


def call(stage: str, *args: Any, **kwargs: Any) -> Any:
    """Run stage `stage` of `recsys_tasks.pipeline` for the current task's run, timed.

    Errors another attempt cannot fix (a bad param, bad data) fail the task at once."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from recsys_tasks import pipeline as stages

    context = get_current_context()
    map_index = getattr(context["ti"], "map_index", -1)
    label = f"{stage}[{map_index}]" if map_index is not None and map_index >= 0 else stage
    try:
        run = stages.RunContext(run_id=context["run_id"], config=config_for(dict(context["params"])), as_of=as_of(context))
        with run.timed(label):
            interrupt.rearm()  # Ctrl-C / SIGTERM under `recsys run` (interrupt.stop_on_signals)
            interrupt.raise_if_stopped()
            return getattr(stages, stage)(run, *args, **kwargs)
    except RecsysError as exc:
        if not exc.retryable:
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        raise


WATCH_DAG = "recsys_watch"


def watch_now() -> dict:
    """recsys_watch's check (pipeline.watch), outside the run and stage tables: it is no run."""
    from airflow.sdk import get_current_context

    from recsys_tasks import pipeline as stages

    context = get_current_context()
    return stages.watch(stages.RunContext(run_id=context["run_id"], config=config_for(dict(context["params"]))))


def as_of(context: Any) -> Any:
    """The instant a run's data is taken as of: its data interval's end, else its logical date,
    else (a manual run without one) when it was queued to run. All three stay the same when the
    run is cleared and run again."""
    dag_run = context.get("dag_run")
    for value in (context.get("data_interval_end"), context.get("logical_date"), getattr(dag_run, "run_after", None)):
        if value is not None:
            return as_utc(value)
    return None


def on_task_retry(context: dict[str, Any]) -> None:
    """One line per retry: which task failed, why, and when it runs again."""
    ti = context["task_instance"]
    delay = getattr(context.get("task"), "retry_delay", None)
    log.warning("%s failed (attempt %s): %s; retrying in %s", ti.task_id, getattr(ti, "try_number", "?"),
                context.get("exception"), f"{delay.total_seconds():.0f} s" if delay else "a while")


def on_task_failure(context: dict[str, Any]) -> None:
    """Task failure callback (after the last attempt): the run table says the run failed and
    why, and the operator's webhook / mailbox is told when one is configured."""
    from recsys_tasks import pipeline as stages
    from recsys_tasks.pipeline.notify import AlertTargets, notify_failure

    exc = context.get("exception")
    ti = context["task_instance"]
    reason = f"task {ti.task_id} failed: {exc}"
    try:
        if ti.dag_id != WATCH_DAG:  # the watch's checks are not runs: nothing to record
            run = stages.RunContext(run_id=context["run_id"], config=config_for(dict(context["params"])))
            stages.mark_failed(run, reason)
    except Exception:  # a failing callback must not hide the task's own error
        log.exception("could not record the failure of task %s", ti.task_id)
    targets = AlertTargets.from_env()
    if interrupt.stop_requested() is not None and not interrupt.report_once():
        return  # the operator stopped the run: one alert says so, not one per task that then fails
    if targets:
        event = {
            "dag_id": ti.dag_id, "run_id": context["run_id"], "task_id": ti.task_id,
            "try_number": getattr(ti, "try_number", None), "reason": str(exc), "log_url": getattr(ti, "log_url", None),
        }
        reached = notify_failure(targets, event)
        log.info("failure notification sent to: %s", ", ".join(reached) or "nobody (delivery failed)")


def use_embedded_defaults() -> None:
    """Embedded defaults for in-process runs: Airflow home and DAGs inside the project."""
    home = environment.recsys_home()
    environment.set_default("RECSYS_HOME", str(home))
    environment.set_default("AIRFLOW_HOME", str(home / "airflow"))
    environment.set_default("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
    environment.set_default("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import conf

    bag = DagBag(dag_folder=conf.get("core", "dags_folder"))
    if bag.import_errors:
        raise RecsysError(f"DAG import errors: {bag.import_errors}")
    if dag_id not in bag.dags:
        raise RecsysError(f"no DAG {dag_id!r} in {conf.get('core', 'dags_folder')}")
    return bag.dags[dag_id]


def _run_after(dag_id: str, logical_date: Any) -> Any:
    """When the run of `logical_date` was queued, if it ran before: `dag.test` then replaces it
    by a run of the same id (a clear and re-run), else by a new run from now."""
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        existing = session.scalar(sa.select(DagRun.run_after).where(DagRun.dag_id == dag_id, DagRun.logical_date == logical_date))
    return existing


def run_dag(dag_id: str, run_conf: dict[str, Any], logical_date: Any = None) -> dict[str, Any]:
    """Run a DAG in-process (`dag.test`) on the metadata DB, returning its outcome.
    `run_conf` holds typed params (see `config.typed_params`): Airflow checks them against
    the DAG's param schema, where `"20"` is not an integer. With `logical_date`, the run of that
    date (cleared first when it ran before: a replay that reads what that date saw)."""
    use_embedded_defaults()
    from airflow.utils.db import upgradedb

    upgradedb()  # idempotent; a few seconds when the schema is current
    dag = load_dag(dag_id)
    dated = {} if logical_date is None else {"logical_date": logical_date, "run_after": _run_after(dag_id, logical_date)}
    dag_run = dag.test(run_conf=run_conf, **dated)
    states = {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): str(ti.state) for ti in dag_run.get_task_instances()
    }
    return {"run_id": dag_run.run_id, "state": str(dag_run.state), "tasks": states}


ORCHESTRATION = environment.Orchestration.from_env()
GPU_QUEUE = ORCHESTRATION.gpu_queue
GPU_POOL = ORCHESTRATION.gpu_pool
SOURCE_ASSET = ORCHESTRATION.source_asset

_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def task_defaults() -> dict[str, Any]:
    """default_args of the DAGs; retries are tunable (tests and demos want fast failures)."""
    settings = environment.Orchestration.from_env()
    return {
        "owner": "recsys",
        "retries": settings.task_retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_s),
        "execution_timeout": timedelta(minutes=settings.task_timeout_min),
        "on_failure_callback": on_task_failure,
        "on_retry_callback": on_task_retry,
    }


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"


def dag_params() -> dict[str, Any]:
    """The trigger form of the UI: every run-level param with its real default, bounds and
    allowed values (all from the setting's declaration), so Airflow refuses a bad value when
    the run is triggered, before any task."""
    from airflow.sdk import Param

    out: dict[str, Any] = {}
    for name, param in PARAMS.items():
        # empty in the form: a deployment setting (keeps the deployment's), or a text whose
        # default is "" (exclude_items: none); both nullable, so Trigger works with the defaults
        default = None if param.deployment or param.default == "" else param.default
        nullable = default is None
        schema: dict[str, Any] = {"description": param.help}
        kind = _JSON_TYPES[param.kind]
        schema["type"] = ["null", kind] if nullable else kind
        if param.kind is str and param.choices:
            schema["enum"] = [None, *param.choices] if nullable else [*param.choices]
        elif param.kind is str:
            schema["minLength"] = 1  # an empty field is null: the default
        elif param.low is not None or param.high is not None:
            schema.update({k: v for k, v in (("minimum", param.low), ("maximum", param.high)) if v is not None})
            # the form moves a number typed outside the range to the nearest bound: say so
            schema["description"] += f" ({_bounds(param.low, param.high)}; the form moves a value outside to the nearest bound)"
        out[name] = Param(default, **schema)
    return out


def dag_settings() -> dict[str, Any]:
    """What every recsys DAG shares: no backfill, one run at a time, the params form, retries."""
    return {
        "start_date": datetime(2026, 1, 1, tzinfo=UTC),
        "catchup": False,
        "max_active_runs": 1,
        "dagrun_timeout": timedelta(hours=environment.Orchestration.from_env().run_timeout_h),
        "params": dag_params(),
        "default_args": task_defaults(),
    }


def ingest_tasks() -> tuple[Any, Any]:
    """extract -> validate -> prepare, shared by the nightly and the pretraining DAG.

    Call inside a DAG; returns the (extracted, prepared) task outputs. Prepare waits for
    validation, so nothing downstream ever sees a log that failed its expectations.
    """
    from airflow.sdk import task

    @task
    def extract() -> dict:
        return call("extract")

    @task
    def validate(extracted: dict) -> dict:
        return call("validate", extracted["interactions"], extracted.get("column_mapping"))

    @task
    def prepare(extracted: dict) -> dict:
        return call("prepare", extracted["interactions"])

    extracted = extract()
    prepared = prepare(extracted)
    validate(extracted) >> prepared
    return extracted, prepared


def pretrain_task(force: bool, outlets: list | None = None) -> Any:
    """The pretraining task on the GPU queue; `force` rebuilds the encoder even if one exists.
    `outlets` (Assets) are updated when the task succeeds."""
    from airflow.sdk import task

    @task(task_id="pretrain", queue=GPU_QUEUE, pool=GPU_POOL, outlets=outlets or [])
    def pretrain(extracted: dict, prepared: dict) -> dict:
        return call("pretrain", prepared["sequences"], extracted["item_attributes"], force=force)

    return pretrain


def serve_tasks(prepared: Any, model: Any, after: Any = None, outlets: list | None = None) -> Any:
    """plan_shards -> generate (mapped, a bounded number of shards) and companion_lists (the
    fallback list and similar items) -> publish, for `model`
    (a task output holding `model_version`). `after` (e.g. the gate) must succeed first;
    `outlets` (Assets) are updated when publish succeeds."""
    from airflow.sdk import task

    @task
    def plan_shards(prepared: dict) -> list[dict]:
        return call("plan_shards", prepared["users"], prepared["sequences"])

    @task
    def generate(prepared: dict, trained: dict, shard: dict) -> dict:
        return call("generate", prepared["sequences"], trained["model_version"], shard)

    @task
    def companion_lists(prepared: dict, trained: dict) -> dict:
        return call("companion_lists", prepared["sequences"], trained["model_version"])

    @task(outlets=outlets or [])
    def publish(trained: dict, shards: list[dict], extras: dict, outlet_events: Any = None) -> dict:
        # indexing, not iterating: iterating a mapped result probes one XCom past the end
        outcome = call("publish", trained["model_version"], [shards[i] for i in range(len(shards))], extras)
        for asset in outlets or []:  # what the run published, for consumers of the Asset event
            outlet_events[asset].extra = {k: outcome.get(k) for k in ("run_id", "model_version", "rows", "users")}
        return outcome

    shards = plan_shards(prepared)
    if after is not None:
        after >> shards
    parts = generate.partial(prepared=prepared, trained=model).expand(shard=shards)
    extras = companion_lists(prepared, model)
    shards >> extras
    return publish(model, parts, extras)
