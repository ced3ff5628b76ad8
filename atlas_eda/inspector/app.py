"""The inspector's web app (Starlette, extra ``inspect``): the static page and one GET
endpoint per view of :mod:`.views`, all read-only. Every answer carries a Content Security
Policy that lets the page run only its own script, and the app answers only requests
addressed to the hosts it was started for (a page elsewhere cannot reach it by DNS
rebinding)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PositionError
from ..projections import Projection
from ..timeline import Timeline
from .views import VIEWS, InspectorInputError, ProjectionsView

__all__ = ["LOOPBACK_HOSTS", "SECURITY_HEADERS", "create_app"]

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The host names the app answers to when it serves this machine only."""

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
"""Headers on every answer: the page may run only its own script and style, load nothing
from elsewhere and be framed by nobody; a defence behind the page's own escaping."""

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}

_BAD_REQUEST = 400
_NOT_FOUND = 404


class _SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _static_route(path: str, name: str, media_type: str) -> Route:
    body = resources.files(__package__).joinpath("static", name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(body, media_type=media_type)

    return Route(path, serve, methods=["GET"])


View = Callable[[Timeline, Mapping[str, str]], dict[str, Any]]


def _view_route(timeline: Timeline, name: str, view: View) -> Route:
    async def answer(request: Request) -> Response:
        # Run on the event loop's thread: the store is read by one request at a time.
        try:
            data: dict[str, Any] = view(timeline, request.query_params)
        except InspectorInputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=_BAD_REQUEST)
        except PositionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=_NOT_FOUND)
        return JSONResponse(data)

    return Route(f"/api/{name}", answer, methods=["GET"])


def create_app(
    timeline: Timeline,
    *,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
    projections: Sequence[Projection] = (),
) -> Starlette:
    """The read-only inspector of ``timeline``'s store: the page at ``/`` and the JSON
    views at ``/api/<view>`` (GET only: any other method is answered 405), the
    ``projections`` among them (their read models are read, never written: the caller
    keeps them and closes them). Requests whose ``Host`` is not one of ``hosts`` are
    refused (400)."""
    views: dict[str, View] = {**VIEWS, "projections": ProjectionsView(projections)}
    routes = [_static_route(path, *static) for path, static in _STATIC.items()]
    routes += [_view_route(timeline, name, view) for name, view in views.items()]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts)),
        ],
    )
