"""The console's FastAPI app, mounted by the plugin under `/recsys` on Airflow's API server.

Server-rendered pages over `recsys_tasks.ops.console`: Runs, one run, Quality, Models (promote,
roll back), Look-up; plus a run's Data Docs and report plot from the artifact store. Every
route asks Airflow's auth manager first (see access.py). The deployment is found the way the
DAGs find it: the environment (`RECSYS_DB_URL`, `RECSYS_ARTIFACT_ROOT`, `RECSYS_HOME`...), then
the `recsys_db` connection. Library imports wait for the first request, so loading the plugin
(the scheduler and `airflow plugins` do too) stays cheap.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys_console.access import Changer, Reader, may_change, role_of

if TYPE_CHECKING:
    from recsys_tasks.ops.console import Deployment

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["num"] = lambda v, d=4: "" if v is None else f"{v:.{d}f}"
templates.env.filters["pct"] = lambda v: "" if v is None else f"{v:.1%}"


def run_label(run_id: str) -> Markup:
    """`manual__2026-...` with a line break allowed after the run type only."""
    kind, sep, stamp = run_id.partition("__")
    if not sep:
        return escape(run_id)
    return Markup("{}__<wbr><span class=\"nw\">{}</span>").format(kind, stamp)


templates.env.filters["run"] = run_label

app = FastAPI(title="Recsys console", docs_url=None, redoc_url=None, openapi_url=None)
app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

# Every response: framed only by the Airflow UI itself (same origin), nothing loaded from elsewhere,
# forms posted only back here. Inline styles stay allowed (the SVG charts); no inline script runs.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@app.middleware("http")
async def security_headers(request: Request, call_next: Any) -> Response:
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    return response


PATH_OR_URI = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|(?<![\w.])/)[^\s'\"]+")


def without_paths(detail: Any) -> str:
    """An error's text without server paths or storage roots: each absolute path or URI keeps
    its last two parts (`/srv/recsys/var/models/v3/model.pt` -> `.../v3/model.pt`)."""
    return PATH_OR_URI.sub(lambda m: ".../" + "/".join(m.group(0).rstrip("/").split("/")[-2:]), str(detail))


@cache
def deployment() -> Deployment:
    """One Deployment per API-server process, resolved as a DAG run resolves it (environment,
    then the `recsys_db` connection); a changed connection needs an API-server restart."""
    from recsys_tasks import airflow_adapter
    from recsys_tasks.ops.console import Deployment

    return Deployment(airflow_adapter.config_for({}))


def page(request: Request, name: str, user: Any, tab: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"base": request.scope.get("root_path", ""), "user": user.get_name(), "role": role_of(user),
                        "tab": tab, "metric": deployment().config.selection_metric, **context},
    )


@app.exception_handler(StarletteHTTPException)
async def http_error(request: Request, error: StarletteHTTPException) -> Response:
    """A browser without a session goes to Airflow's login page; other errors get a small page."""
    if error.status_code == status.HTTP_401_UNAUTHORIZED and request.method == "GET":
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status.HTTP_303_SEE_OTHER)
    return templates.TemplateResponse(
        request, "error.html", {"base": request.scope.get("root_path", ""), "code": error.status_code,
                                "detail": without_paths(error.detail)}, status_code=error.status_code,
    )


@app.get("/", response_class=HTMLResponse)
def runs_page(request: Request, user: Reader) -> HTMLResponse:
    from recsys_tasks.ops import console

    return page(request, "runs.html", user, "runs", runs=console.runs(deployment()))


@app.get("/run", response_class=HTMLResponse)
def run_page(request: Request, user: Reader, run_id: str) -> HTMLResponse:
    from recsys_tasks.ops import console

    run = console.run_detail(deployment(), run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id!r} in the run table")
    return page(request, "run.html", user, "runs", run=run)


@app.get("/runs/{key}/{path:path}")
def run_artifact(user: Reader, key: str, path: str) -> Response:
    from recsys_tasks.errors import ArtifactNotFoundError
    from recsys_tasks.ops import console

    try:
        body = console.run_artifact(deployment(), key, path)
    except ArtifactNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    return Response(body, media_type=mimetypes.guess_type(path)[0] or "application/octet-stream")


@app.get("/quality", response_class=HTMLResponse)
def quality_page(request: Request, user: Reader) -> HTMLResponse:
    from recsys_tasks.ops import console

    history = console.quality(deployment())
    realised = console.outcomes(deployment())
    return page(
        request,
        "quality.html",
        user,
        "quality",
        history=history,
        chart=console.quality_svg(history, deployment().config.selection_metric),
        series={k: v for k, v in console.SERIES.items() if any(k in h["scores"] for h in history)},  # scorers that ran
        outcomes=realised,
        outcomes_chart=console.outcomes_svg(realised["history"]),
    )


@app.get("/models", response_class=HTMLResponse)
def models_page(request: Request, user: Reader, changed: str | None = None) -> HTMLResponse:
    """`changed` (set by the redirect after a promote or roll back) only asks for the notice;
    its text comes from the registry and the results database, never from the query string."""
    from recsys_tasks.ops import console

    dep = deployment()
    registry = console.models(dep)
    notice = None
    if changed in ("promote", "rollback") and registry["production"]:
        pointer = registry["production"]
        notice = f"Production is now {pointer['model_version']} ({pointer['reason']}, {registry['promoted']})."
    return page(request, "models.html", user, "models", registry=registry, may_change=may_change(user),
                notice=notice, readers_note=console.readers_note(dep) if dep.has_runs() else None)


def _confirmed(confirm: str | None) -> None:
    if confirm not in ("on", "yes", "true"):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "tick the confirmation box to change production")


def _changed(request: Request, pointer: dict[str, Any], what: str, action: str) -> RedirectResponse:
    log.info("recsys console: %s: production is now %s (%s)", what, pointer["model_version"], pointer["reason"])
    base = request.scope.get("root_path", "")
    return RedirectResponse(f"{base}/models?{urlencode({'changed': action})}", status.HTTP_303_SEE_OTHER)


@app.post("/models/promote")
def promote(request: Request, user: Changer, version: Annotated[str, Form()],
            confirm: Annotated[str | None, Form()] = None, over_gate: Annotated[str | None, Form()] = None) -> Response:
    from recsys_tasks.errors import RecsysError
    from recsys_tasks.ops import console

    _confirmed(confirm)
    try:
        pointer = console.promote(deployment(), version, user.get_name() + " in the Airflow UI",
                                  over_gate=over_gate in ("on", "yes", "true"))
    except RecsysError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    return _changed(request, pointer, f"{user.get_name()} promoted {version}", "promote")


@app.post("/models/rollback")
def rollback(request: Request, user: Changer, confirm: Annotated[str | None, Form()] = None) -> Response:
    from recsys_tasks.errors import RecsysError
    from recsys_tasks.ops import console

    _confirmed(confirm)
    try:
        pointer = console.rollback(deployment())
    except RecsysError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
    return _changed(request, pointer, f"{user.get_name()} rolled back", "rollback")


@app.get("/lookup", response_class=HTMLResponse)
def lookup_page(request: Request, user: Reader, user_id: str = "", item_id: str = "") -> HTMLResponse:
    from recsys_tasks.ops import lookup

    dep = deployment()
    found = lookup.user_lookup(dep, user_id.strip()) if user_id.strip() else None
    similar = lookup.similar_items(dep, item_id.strip()) if item_id.strip() else None
    return page(request, "lookup.html", user, "lookup", user_id=user_id, item_id=item_id, found=found,
                similar=similar, samples=lookup.sample_users(dep))
