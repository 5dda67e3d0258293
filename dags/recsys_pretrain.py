"""
### Weekly encoder pretraining

Rebuilds the shared sequence encoder with the self-supervised objectives in
`pretrain_objectives` (`contrastive` by default; with item attributes, `contrastive+attribute`;
`masked_item` is there too): **extract** -> **validate** -> **prepare** -> **pretrain**.
The new encoder becomes `encoders/LATEST.json`, which every nightly run warm-starts from.
Runs on Sundays at 01:00 UTC, or on demand from the UI with the same params as the nightly.

**Assets.** A successful pretrain updates `recsys_encoder` (`recsys://encoders/latest`), so
a DAG that should follow every new encoder (an embedding export, an offline study) can
schedule on it. The nightly's own inline pretraining (first run, or `force_pretrain`) does
not update it. pretrain runs on the `RECSYS_GPU_QUEUE` queue (`gpu` in docker-compose).
"""

from __future__ import annotations

from airflow.sdk import Asset, dag

from recsys_tasks.airflow_adapter import dag_settings, ingest_tasks, pretrain_task

ENCODER = Asset(name="recsys_encoder", uri="recsys://encoders/latest")


@dag(
    dag_id="recsys_pretrain",
    schedule="0 1 * * 0",
    tags=["recsys", "pretraining", "gpu"],
    doc_md=__doc__,
    **dag_settings(),
)
def recsys_pretrain():
    extracted, prepared = ingest_tasks()
    pretrain_task(force=True, outlets=[ENCODER])(extracted, prepared)


recsys_pretrain()
