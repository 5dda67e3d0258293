"""
### Nightly recommendations

Every night: **extract** the interaction log -> **validate** it (Great Expectations) ->
**prepare** sequences and a leave-one-out split -> **pretrain** the encoder (reused unless
missing or `force_pretrain`) -> **finetune** next-item prediction -> **evaluate** against
popularity -> **gate** -> **generate** top-K per user in shards -> **publish** atomically
to `recommendations`, read through the `recommendations_current` view.

A failed validation or a rejected model stops the run before anything is published, so
readers keep the previous run. Trigger with parameters from the UI ("Trigger DAG" with
config) or `recsys run --param top_k=20 --param epochs=5`.

The run table (`recsys_runs`) says where each run got to and why it stopped.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from recsys_tasks.airflow_adapter import (
    GPU_POOL,
    GPU_QUEUE,
    call,
    dag_settings,
    ingest_tasks,
    pretrain_task,
    serve_tasks,
)


@dag(
    dag_id="recsys_nightly",
    schedule="0 2 * * *",
    tags=["recsys", "nightly"],
    doc_md=__doc__,
    **dag_settings(),
)
def recsys_nightly():
    @task(queue=GPU_QUEUE, pool=GPU_POOL)
    def finetune(extracted: dict, prepared: dict, encoder: dict) -> dict:
        return call("finetune", prepared["sequences"], encoder["encoder"], extracted["item_attributes"])

    @task
    def evaluate(prepared: dict, trained: dict) -> dict:
        return call("evaluate", prepared["sequences"], trained["model_version"])

    @task.short_circuit
    def gate(trained: dict, evaluation: dict) -> bool:
        return call("gate", trained["model_version"], evaluation)["blessed"]

    extracted, prepared = ingest_tasks()
    encoder = pretrain_task(force=False)(extracted, prepared)  # reuses the weekly encoder unless missing or forced
    trained = finetune(extracted, prepared, encoder)
    blessed = gate(trained, evaluate(prepared, trained))
    serve_tasks(prepared, trained, after=blessed)


recsys_nightly()
