"""
### Regenerate with the production model

Publishes fresh recommendations from the model in production, without training:
**extract** -> **validate** -> **prepare** -> **production_model** -> **generate** (shards)
-> **publish**. Use it after `recsys models rollback` (or `promote`) so readers get the
chosen model's recommendations at once, or whenever histories changed but a retrain is not
wanted. Manual only; same params as the nightly DAG.

**Assets.** Like the nightly, a successful publish updates `recommendations_current`
(`recsys://recommendations/current`), so downstream DAGs see every switch of the view.
"""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

from recsys_tasks.airflow_adapter import call, dag_settings, ingest_tasks, serve_tasks

RECOMMENDATIONS = Asset(name="recommendations_current", uri="recsys://recommendations/current")


@dag(
    dag_id="recsys_regenerate",
    schedule=None,
    tags=["recsys", "serving"],
    doc_md=__doc__,
    **dag_settings(),
)
def recsys_regenerate():
    @task
    def production_model() -> dict:
        return call("production_model")

    _, prepared = ingest_tasks()
    model = production_model()
    prepared >> model
    serve_tasks(prepared, model, outlets=[RECOMMENDATIONS])


recsys_regenerate()
