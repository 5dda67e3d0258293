"""Who may see the console and who may change production, asked of Airflow's auth manager.

The user comes from Airflow's own dependency (`GetUserDep`: the JWT in the `Authorization`
header or the UI's `_token` cookie). Reading needs the custom view `Recsys console` (GET);
promoting and rolling back need it with POST, which on the simple auth manager means the Admin
role: that manager answers every custom-view method with its GET rule, so the role decides.
Changes sent by a browser must come from an allowed origin (the configured ones, or the
server's own loopback address; never whatever `Host` says), on top of the cookie's own
SameSite=Lax: `make ui` runs with every visitor an admin, cookie or not.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, HTTPException, Request, status

RESOURCE = "Recsys console"
CHANGE_ROLE = "ADMIN"  # on the simple auth manager


def role_of(user: BaseUser) -> str | None:
    return getattr(user, "role", None)


def may_read(user: BaseUser) -> bool:
    return get_auth_manager().is_authorized_custom_view(method="GET", resource_name=RESOURCE, user=user)


def may_change(user: BaseUser) -> bool:
    """Whether the user may promote or roll back a model."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    manager = get_auth_manager()
    if not manager.is_authorized_custom_view(method="POST", resource_name=RESOURCE, user=user):
        return False
    if isinstance(manager, SimpleAuthManager):
        return (role_of(user) or "").upper() == CHANGE_ROLE
    return True


def reader(user: GetUserDep) -> BaseUser:
    if not may_read(user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{user.get_name()} may not open the {RESOURCE}")
    return user


Reader = Annotated[BaseUser, Depends(reader)]


LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


def origin_of(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def allowed_origins(request: Request) -> set[str]:
    """The configured origins (`environment.console_origins`: RECSYS_CONSOLE_ORIGINS, else
    Airflow's `[api] base_url`) and the server's own loopback address on the port it listens on.
    Never the request's `Host`: a page on any name that resolves here (DNS rebinding) would match."""
    from airflow.configuration import conf

    from recsys_tasks.config import environment

    configured = environment.console_origins() or [conf.get("api", "base_url", fallback="") or ""]
    allowed = {origin_of(o) for o in configured} - {""}
    server = request.scope.get("server")
    if server and server[1]:
        allowed |= {f"{scheme}://{host}:{server[1]}" for scheme in ("http", "https") for host in LOOPBACK}
    return allowed


def _same_origin(request: Request) -> bool:
    """A change sent by a browser must come from a page of an allowed origin (browsers name the
    page in Origin on every POST); a client that names none must hold a token of its own."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin:
        return origin_of(origin) in allowed_origins(request)
    return bool(request.headers.get("authorization")) and "_token" not in request.cookies


def changer(request: Request, user: Reader) -> BaseUser:
    if not _same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "changes must be sent from the console's own pages")
    if not may_change(user):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{user.get_name()} ({role_of(user) or 'no role'}) may not change production: promoting and "
            "rolling back need the Admin role",
        )
    return user


Changer = Annotated[BaseUser, Depends(changer)]
