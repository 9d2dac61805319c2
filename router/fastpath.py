"""Fast lane for ``tools/call`` on the aggregate ``/mcp`` (see ``FastPath.handle``)."""

from __future__ import annotations

from typing import Any

from starlette.types import Receive, Scope, Send


class FastPath:
    def __init__(self, dispatcher: Any, aggregate: Any, manager: Any, *, max_body_bytes: int) -> None:
        self.dispatcher = dispatcher
        self.aggregate = aggregate
        self.manager = manager
        self.max_body_bytes = max_body_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> bool:
        return False
