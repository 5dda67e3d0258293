"""What the DAG files share: default args, the trigger form, and the task groups that call
stages by name. Airflow is imported inside functions, so a DAG file parses fast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from recsys_tasks.airflow_adapter.runtime import call, on_task_failure
from recsys_tasks.config import PARAMS, environment

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
    }


def dag_params() -> dict[str, Any]:
    """The trigger form of the UI: every run-level param with its real default, bounds and
    allowed values (all from the setting's declaration), so Airflow refuses a bad value when
    the run is triggered, before any task."""
    from airflow.sdk import Param

    out: dict[str, Any] = {}
    for name, param in PARAMS.items():
        default = None if param.deployment else param.default
        nullable = default is None  # a deployment setting shows empty (keeps the deployment's); None may be real too
        schema: dict[str, Any] = {"description": param.help}
        kind = _JSON_TYPES[param.kind]
        schema["type"] = ["null", kind] if nullable else kind
        if param.kind is str:
            if param.choices:
                schema["enum"] = [None, *param.choices] if nullable else [*param.choices]
            else:
                schema["minLength"] = 1 if default else 0  # "" is a real default (exclude_items: none)
        else:
            schema.update({k: v for k, v in (("minimum", param.low), ("maximum", param.high)) if v is not None})
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
        return call("plan_shards", prepared["users"])

    @task
    def generate(prepared: dict, trained: dict, shard: dict) -> dict:
        return call("generate", prepared["sequences"], trained["model_version"], shard)

    @task
    def companion_lists(prepared: dict, trained: dict) -> dict:
        return call("companion_lists", prepared["sequences"], trained["model_version"])

    @task(outlets=outlets or [])
    def publish(trained: dict, shards: list[dict], extras: dict) -> dict:
        # indexing, not iterating: iterating a mapped result probes one XCom past the end
        return call("publish", trained["model_version"], [shards[i] for i in range(len(shards))], extras)

    shards = plan_shards(prepared)
    if after is not None:
        after >> shards
    parts = generate.partial(prepared=prepared, trained=model).expand(shard=shards)
    extras = companion_lists(prepared, model)
    shards >> extras
    return publish(model, parts, extras)
