"""
### Downstream example: act on freshly published recommendations

An example for teams that consume the recommendations: scheduled on the
`recommendations_current` Asset (`recsys://recommendations/current`), it runs after every
successful publish of `recsys_nightly` or `recsys_regenerate`, reads the reader view through
the `recsys_tasks` library and logs which run it shows and how many rows and users it holds.
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
        from recsys_tasks import db
        from recsys_tasks.airflow_adapter import config_for
        from recsys_tasks.storage.deployment import Deployment

        published_by = [e.source_run_id for events in (triggering_asset_events or {}).values() for e in events]
        config = config_for({})  # the deployment's results database (RECSYS_DB_URL or connection recsys_db)
        with Deployment(config) as deployment:
            view = db.read_current(deployment.engine, deployment.tables)
        shown = sorted(view["run_id"].unique())
        log.info(
            "recommendations_current shows run %s (model %s): %d rows for %d users; triggered by the publish of %s",
            ", ".join(shown) or "none", ", ".join(sorted(view["model_version"].unique())), len(view),
            view["user_id"].nunique(), ", ".join(filter(None, published_by)) or "no run (manual trigger)",
        )
        return {"run_id": shown[0] if shown else None, "rows": len(view), "users": int(view["user_id"].nunique())}

    read_recommendations()


recsys_downstream_example()
