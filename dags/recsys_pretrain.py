"""
### Weekly encoder pretraining

Rebuilds the shared sequence encoder with the self-supervised objectives in
`pretrain_objectives` (`contrastive` by default; with item attributes, `contrastive+attribute`;
`masked_item` is there too): **extract** -> **validate** -> **prepare** -> **pretrain**.
The new encoder becomes `encoders/LATEST.json`, which every nightly run warm-starts from.
Runs on Sundays at 01:00 UTC, or on demand from the UI with the same params as the nightly.
"""

from __future__ import annotations

from airflow.sdk import dag

from recsys_tasks.airflow_adapter import dag_settings, ingest_tasks, pretrain_task


@dag(
    dag_id="recsys_pretrain",
    schedule="0 1 * * 0",
    tags=["recsys", "pretraining", "gpu"],
    doc_md=__doc__,
    **dag_settings(),
)
def recsys_pretrain():
    extracted, prepared = ingest_tasks()
    pretrain_task(force=True)(extracted, prepared)


recsys_pretrain()
