"""A live source to try the relay with: every line on standard input becomes one event, sent to
each client of ``GET /events`` (Server-Sent Events) and of ``/ws`` (WebSocket messages).

    python examples/relay-demo/source.py [--port 8780] [--every 4]

Type a headline and press Enter (or pipe lines in); a JSON object such as
``{"title": "…", "text": "…"}`` is passed on as it is. ``--every N`` also sends one of a few sample
headlines every N seconds. The relay refuses loopback sources unless the router allows this one:
start the router with ``VSM_FETCH_ALLOW=127.0.0.1:8780``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

SAMPLES = [
    {"title": "European Central Bank holds interest rates", "text": "Inflation in the euro area eased to 2.1 percent."},
    {"title": "Heavy snowfall closes Alpine passes", "text": "Road authorities in Switzerland warn drivers."},
    {"title": "Solar subsidies extended for small businesses", "text": "The energy ministry announced the plan on Monday."},
    {"title": "Rail strike delays commuters in Paris", "text": "Unions and SNCF meet again on Thursday."},
]


class Hub:
    """Fans each line out to every connected client (one queue per client)."""

    def __init__(self) -> None:
        self.clients: set[asyncio.Queue[tuple[int, str]]] = set()
        self.sent = 0

    def send(self, line: str) -> None:
        self.sent += 1
        for queue in self.clients:
            queue.put_nowait((self.sent, line))

    @contextlib.contextmanager
    def client(self) -> Iterator[asyncio.Queue[tuple[int, str]]]:
        queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self.clients.add(queue)
        try:
            yield queue
        finally:
            self.clients.discard(queue)


async def read_stdin(hub: Hub) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except ValueError:  # a regular file (`< lines.txt`): no pipe transport; send its lines once
        for text in (await asyncio.to_thread(sys.stdin.read)).splitlines():
            if text.strip():
                hub.send(text.strip())
        return
    while line := await reader.readline():
        text = line.decode("utf-8", errors="replace").strip()
        if text:
            hub.send(text)


async def samples(hub: Hub, every: float) -> None:
    for item in itertools.cycle(SAMPLES):
        await asyncio.sleep(every)
        hub.send(json.dumps(item))


def build(every: float) -> Starlette:
    hub = Hub()

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            with hub.client() as queue:
                yield b": connected\n\n"
                while True:
                    n, line = await queue.get()
                    yield f"id: {n}\ndata: {line}\n\n".encode()

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        with hub.client() as queue, contextlib.suppress(WebSocketDisconnect):
            while True:
                await socket.send_text((await queue.get())[1])

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(read_stdin(hub))]
        if every > 0:
            tasks.append(asyncio.create_task(samples(hub, every)))
        yield
        for task in tasks:
            task.cancel()

    return Starlette(routes=[Route("/events", events), WebSocketRoute("/ws", ws)], lifespan=lifespan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8780)
    ap.add_argument("--every", type=float, default=0, help="send a sample headline every N seconds (0 = never)")
    args = ap.parse_args()
    base = f"{args.host}:{args.port}"
    print(f"source: SSE http://{base}/events · WebSocket ws://{base}/ws — type a line to send it", flush=True)
    uvicorn.run(build(args.every), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
