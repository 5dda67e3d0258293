"""The operators' console inside the Airflow UI: the nightly runs, quality over time, the
model registry (promote, roll back) and a user's published list, at `/recsys/` on the API
server and as "Recsys" in the UI's navigation. The pages live in the `recsys_console` package
beside this file; what they show comes from `recsys_tasks.ops.console`.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from recsys_console.app import app

URL_PREFIX = "/recsys"


class RecsysConsolePlugin(AirflowPlugin):
    name = "recsys_console"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Recsys console"}]
    external_views = [
        {
            "name": "Recsys",
            "href": URL_PREFIX.lstrip("/") + "/",  # relative: the UI resolves it against its base URL
            "url_route": "recsys",  # shown inside the UI at /plugin/recsys
            "destination": "nav",
            "nav_top_level": True,
            "icon": URL_PREFIX.lstrip("/") + "/static/icon.svg",
        }
    ]
