"""Read a Server-Sent Events source: yields (id, event, data) per dispatched event, reconnecting
with ``Last-Event-ID`` after a dropped connection (WHATWG EventSource parsing rules, minus retry)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class SseItem:
    id: str
    event: str
    data: str


async def read_sse(url: str, *, reconnect_s: float = 1.0, timeout_s: float = 30.0) -> AsyncIterator[SseItem]:
    last_id = ""
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, read=None)) as http:
        while True:
            headers = {"accept": "text/event-stream"}
            if last_id:
                headers["last-event-id"] = last_id
            try:
                async with http.stream("GET", url, headers=headers) as resp:
                    resp.raise_for_status()
                    event, data = "", list[str]()
                    async for line in resp.aiter_lines():
                        if line == "":
                            if data:
                                yield SseItem(last_id, event or "message", "\n".join(data))
                            event, data = "", []
                            continue
                        if line.startswith(":"):
                            continue
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "data":
                            data.append(value)
                        elif field == "event":
                            event = value
                        elif field == "id" and "\0" not in value:
                            last_id = value
            except httpx.HTTPError:
                pass  # dropped or refused: reconnect below, from the last id seen
            await asyncio.sleep(reconnect_s)
