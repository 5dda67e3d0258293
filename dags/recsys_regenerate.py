"""
### Regenerate with the production model

Publishes fresh recommendations from the model in production, without training:
**extract** -> **validate** -> **prepare** -> **production_model** -> **generate** (shards)
-> **publish**. Use it after `recsys models rollback` (or `promote`) so readers get the
chosen model's recommendations at once, or whenever histories changed but a retrain is not
wanted. Manual only; same params as the nightly DAG.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from recsys_tasks.airflow_adapter import call, dag_params, ingest_tasks, serve_tasks, task_defaults


@dag(
    dag_id="recsys_regenerate",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "serving"],
    doc_md=__doc__,
    params=dag_params(),
    default_args=task_defaults(),
)
def recsys_regenerate():
    @task
    def production_model() -> dict:
        return call("production_model")

    _, prepared = ingest_tasks()
    model = production_model()
    prepared >> model
    serve_tasks(prepared, model)


recsys_regenerate()
