"""The Airflow adapter: the only code of recsys_tasks that imports `airflow`.

`dags` holds what the DAG files share (default args, the trigger form built from the settings,
the task groups); `runtime` turns a task's context into a plain `RunContext`, calls a stage by
name, maps errors onto Airflow's retries, records failures, and runs a DAG for `recsys run`.
Airflow and the stages (torch, GX) are imported inside functions, so DAG files parse fast."""

from recsys_tasks.airflow_adapter.dags import (
    GPU_POOL,
    GPU_QUEUE,
    SOURCE_ASSET,
    dag_params,
    dag_settings,
    ingest_tasks,
    pretrain_task,
    serve_tasks,
    task_defaults,
)
from recsys_tasks.airflow_adapter.runtime import (
    call,
    config_for,
    load_dag,
    on_task_failure,
    run_dag,
    use_embedded_defaults,
)

__all__ = [
    "GPU_POOL", "GPU_QUEUE", "SOURCE_ASSET", "call", "config_for", "dag_params", "dag_settings", "ingest_tasks",
    "load_dag", "on_task_failure", "use_embedded_defaults", "pretrain_task", "run_dag", "serve_tasks", "task_defaults",
]
