"""
### Downstream example: act on freshly published recommendations

An example for teams that consume the recommendations: scheduled on the
`recommendations_current` Asset (`recsys://recommendations/current`), it runs after every
successful publish of `recsys_nightly` or `recsys_regenerate`, reads the reader view a page at a
time through the reader kit (`recsys_tasks.reader`) and logs which run it shows, how many rows
and users it holds, and what the publish announced in its Asset event (`extra`: run_id,
model_version, rows, users).
Copy it as the start of a cache warm-up, an export or a notification; refer to the Asset by
the same name and URI.

The view always shows exactly one complete run, so what this task reads is never a mix; when
two publishes happen in quick succession it may already show the newer run, and it says so.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, dag, task

log = logging.getLogger(__name__)

RECOMMENDATIONS = Asset(name="recommendations_current", uri="recsys://recommendations/current")


@dag(
    dag_id="recsys_downstream_example",
    schedule=[RECOMMENDATIONS],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "example", "downstream"],
    doc_md=__doc__,
    default_args={"owner": "recsys", "retries": 2, "retry_delay": timedelta(seconds=30)},
)
def recsys_downstream_example():
    @task
    def read_recommendations(triggering_asset_events=None) -> dict:
        from recsys_tasks.airflow_adapter import config_for
        from recsys_tasks.reader import Reader
        from recsys_tasks.storage.deployment import Deployment

        # what each publish announced in its Asset event: run_id, model_version, rows, users
        announced = [e.extra for events in (triggering_asset_events or {}).values() for e in events if e.extra]
        config = config_for({})  # the deployment's results database (RECSYS_DB_URL or connection recsys_db)
        with Deployment(config) as deployment:
            t = deployment.tables
            reader = Reader(deployment.engine, current_view=t.view, fallback_view=t.fallback_view,
                            similar_view=t.similar_view, runs_view=t.runs_public)
            run = reader.current_run() or {}
            rows = users = 0
            last_user = None
            for page in reader.pages(50_000):  # a page at a time, never the whole view in memory
                rows += len(page)
                for row in page:  # pages come in (user_id, rank) order
                    users += row["user_id"] != last_user
                    last_user = row["user_id"]
        log.info(
            "recommendations_current shows run %s (model %s): %d rows for %d users; announced by the publish: %s",
            run.get("run_id") or "none", run.get("model_version"), rows, users, announced or "nothing (manual trigger)",
        )
        return {"run_id": run.get("run_id"), "rows": rows, "users": users}

    read_recommendations()


recsys_downstream_example()
