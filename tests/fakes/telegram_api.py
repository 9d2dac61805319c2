"""A local Telegram Bot API: ``POST /bot<token>/sendMessage`` with Telegram's request and answer
shapes (JSON or form body; ``{"ok": true, "result": Message}`` / ``{"ok": false, "error_code",
"description", "parameters": {"retry_after"}}``). ``fail_next`` scripts errors for the next calls.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class FakeTelegram:
    token: str = "123456:TEST-token"
    sent: list[dict[str, Any]] = field(default_factory=list)
    fail_next: list[tuple[int, float | None]] = field(default_factory=list)  # (status, retry_after)
    calls: list[float] = field(default_factory=list)  # monotonic time of every request
    hold: asyncio.Event | None = None  # when set: accept the message, then answer only once it is set
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/bot{token}/{method}", self._method, methods=["POST"])])

    async def _method(self, request: Request) -> JSONResponse:
        self.calls.append(time.monotonic())
        if request.path_params["token"] != self.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        if request.path_params["method"] != "sendMessage":
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        if request.headers.get("content-type", "").startswith("application/json"):
            body: dict[str, Any] = await request.json()
        else:
            body = dict(await request.form())
        if "chat_id" not in body or not str(body.get("text", "")).strip():
            return JSONResponse(
                {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}, 400
            )
        if self.fail_next:
            status, retry_after = self.fail_next.pop(0)
            answer: dict[str, Any] = {"ok": False, "error_code": status, "description": "scripted failure"}
            if retry_after is not None:
                answer["parameters"] = {"retry_after": retry_after}
                answer["description"] = f"Too Many Requests: retry after {retry_after}"
            return JSONResponse(answer, status)
        message = {"message_id": next(self._ids), "date": int(time.time()), "chat": {"id": body["chat_id"]},
                   "text": body["text"]}
        self.sent.append(message)
        if self.hold is not None:  # the message is out; the caller waits for the answer
            await self.hold.wait()
        return JSONResponse({"ok": True, "result": message})
