"""A webhook receiver that verifies Standard Webhooks signatures and records what it got.

Every request is kept in ``requests``; ``accepted`` holds the verified ones by ``webhook-id``.
``fail_next`` scripts answers (status, Retry-After) for the next requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vsm_mcp.workers.notify.webhook import verify


@dataclass
class WebhookReceiver:
    secret: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    accepted: dict[str, list[bytes]] = field(default_factory=dict)
    fail_next: list[tuple[int, str | None]] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        self.calls.append(time.monotonic())
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        ok = verify(self.secret, headers, body)
        self.requests.append({"headers": headers, "body": body, "verified": ok})
        if not ok:
            return JSONResponse({"error": "bad signature"}, 401)
        if self.fail_next:
            status, retry_after = self.fail_next.pop(0)
            return Response(status_code=status, headers={"retry-after": retry_after} if retry_after else {})
        self.accepted.setdefault(headers["webhook-id"], []).append(body)
        return JSONResponse({"received": True})
