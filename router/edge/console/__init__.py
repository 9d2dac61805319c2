"""``/console`` — the web console: tool search and calls, upstreams and audit, live events, chat
with an LLM-CDN model that uses the gateway's tools, plans.

Why plain ES modules and no front-end build: the console is five small views over the gateway's
own HTTP API (``/v1/tools``, ``/v1/events``, ``/readyz``, ``/v1/audit``, ``/v1/chat/completions``);
vanilla JavaScript does that in ~600 lines that every browser runs as shipped. No npm build in
``make run``, nothing fetched from a CDN at run time, nothing to rebuild when the Python package
changes. The pages carry no data: everything they show comes from API calls the browser makes
with the user's key, through the same gate, scopes and audit as any client. So the static files
are public (the gate's browser rules still apply to them), and the data never is.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC = Path(__file__).resolve().parent / "static"
# Pages are plain files of this package: a strict policy, no inline script, same-origin only.
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


class _SecureStatic:
    """StaticFiles with the security headers above on every answer."""

    def __init__(self) -> None:
        self.files = StaticFiles(directory=STATIC, html=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.files(scope, receive, send_with_headers)


async def _to_console(_request: object) -> Response:
    return RedirectResponse("/console/", status_code=308)


def console_routes() -> list[BaseRoute]:
    """``/console`` (redirect) and ``/console/…`` (the files), named ``console`` for the gate."""
    return [Route("/console", _to_console, methods=["GET"], name="console"),
            Mount("/console", app=_SecureStatic(), name="console")]
