"""
### Watch what readers see

Every 15 minutes: is the run readers see older than `RECSYS_MAX_LIST_AGE_H` hours (default
30)? Has tonight's run published, or been judged by the gate, by `RECSYS_PUBLISH_DEADLINE`
(HH:MM UTC, default 06:00)? Each problem is alerted once (webhook / e-mail, as failures are),
saying what is late and why: which stage a run is stuck in, what it failed with, or that no
run started at all. Every check also sends the lists' age as a metric (`lists.age_hours`).

A DAG of its own rather than a deadline callback on the nightly: the nights that never start
(a stopped scheduler, a paused DAG) have no run to hang a callback on.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from recsys_tasks.airflow_adapter import WATCH_DAG, dag_settings, watch_now


@dag(
    dag_id=WATCH_DAG,
    schedule="*/15 * * * *",
    tags=["recsys", "alerts"],
    doc_md=__doc__,
    **{**dag_settings(), "dagrun_timeout": timedelta(minutes=10)},
)
def recsys_watch():
    @task(execution_timeout=timedelta(minutes=5))
    def watch() -> dict:
        return watch_now()

    watch()


recsys_watch()
