"""
### Nightly recommendations

Every night: **extract** the interaction log -> **validate** it (Great Expectations) ->
**prepare** sequences and a leave-one-out split -> **track_outcomes** (how the lists readers
have been seeing did against the events since) -> **pretrain** the encoder (reused unless
missing or `force_pretrain`) -> **finetune** next-item prediction -> **evaluate** against
popularity -> **gate** -> **generate** top-K per user in shards -> **publish** atomically
to `recommendations`, read through the `recommendations_current` view.

A failed validation or a rejected model stops the run before anything is published, so
readers keep the previous run. On a first night (no production model yet) a rejected
candidate gives way to the strongest baseline: its lists are published (`strategy` names it,
the run's model version is `baseline-<name>`), so readers never get nothing. Trigger with
parameters from the UI ("Trigger DAG" with config) or `recsys run --param top_k=20 --param epochs=5`.

**Schedule.** 02:00 UTC every day, unless the operator sets `RECSYS_SOURCE_ASSET` to the URI
of the Asset that the interaction log's producer updates (for example
`s3://events/interactions`): the nightly then runs whenever that Asset gets a new event (a
producer DAG with it as an outlet, or `POST /api/v2/assets/events` from the system that
writes the log). The variable is read where DAG files are parsed (the DAG processor).

**Assets.** A successful publish updates `recommendations_current`
(`recsys://recommendations/current`); downstream DAGs schedule on it (see
`recsys_downstream_example`). pretrain/finetune run on the `RECSYS_GPU_QUEUE` queue
(`gpu` in docker-compose).

The run table (`recsys_runs`) says where each run got to and why it stopped.
"""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

from recsys_tasks.airflow_adapter import (
    GPU_POOL,
    GPU_QUEUE,
    SOURCE_ASSET,
    call,
    dag_settings,
    ingest_tasks,
    pretrain_task,
    serve_tasks,
)

# Declared by name and URI in every DAG that publishes or reads it: downstream DAGs live in
# other repositories and refer to the Asset the same way.
RECOMMENDATIONS = Asset(name="recommendations_current", uri="recsys://recommendations/current")


@dag(
    dag_id="recsys_nightly",
    schedule=Asset(SOURCE_ASSET) if SOURCE_ASSET else "0 2 * * *",
    tags=["recsys", "nightly"],
    doc_md=__doc__,
    **dag_settings(),
)
def recsys_nightly():
    @task(queue=GPU_QUEUE, pool=GPU_POOL)
    def finetune(extracted: dict, prepared: dict, encoder: dict) -> dict:
        return call("finetune", prepared["sequences"], encoder["encoder"], extracted["item_attributes"])

    @task
    def track_outcomes(extracted: dict) -> dict:
        return call("track_outcomes", extracted["interactions"])

    @task
    def evaluate(prepared: dict, trained: dict) -> dict:
        return call("evaluate", prepared["sequences"], trained["model_version"])

    @task.short_circuit
    def gate(trained: dict, evaluation: dict) -> dict:
        # what to publish (the candidate, or on a first night the strongest baseline); empty skips it
        decision = call("gate", trained["model_version"], evaluation, trained.get("refit_version"))
        return decision if decision["publish"] else {}

    extracted, prepared = ingest_tasks()
    encoder = pretrain_task(force=False)(extracted, prepared)  # reuses the weekly encoder unless missing or forced
    trained = finetune(extracted, prepared, encoder)
    prepared >> track_outcomes(extracted) >> trained  # the lists readers saw are scored before anything replaces them
    decision = gate(trained, evaluate(prepared, trained))
    serve_tasks(prepared, decision, after=decision, outlets=[RECOMMENDATIONS])


recsys_nightly()
