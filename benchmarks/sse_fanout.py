"""SSE fan-out: N concurrent /v1/events connections on 127.0.0.1, events published at a fixed rate.

Measures, for our SSE edge (router/edge/sse.py: hub + event log + per-connection bounded buffer)
and, in the same run, for a baseline minimal Starlette SSE endpoint fed by one asyncio.Queue
per client:

* publish → receipt latency p50/p99 (wall clock; server and clients run on this machine),
* delivered / lost events (expected = events × connections),
* server RSS after all connections are open, and KB per connection (RSS growth / N),
* server CPU time per delivered event (user + system), which the machine's load does not inflate
  the way it inflates wall-clock latency.

Each server runs in its own process under uvicorn; the clients run in ``--clients`` separate
processes (raw asyncio streams) so one Python process does not bottleneck the load on 2 cores.

    python benchmarks/sse_fanout.py --json                      # 10,000 connections
    python benchmarks/sse_fanout.py --connections 200 --events 5 --json

The last line of output is a JSON object (``--json``). Goals: 0 lost, p99 < 100 ms, < 20 KB/conn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- servers -------------------------------------------------------------------------------

def baseline_app() -> Any:
    """The minimal SSE endpoint: a StreamingResponse per client, fed by its own asyncio.Queue."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    queues: set[asyncio.Queue[dict[str, Any]]] = set()

    async def events(_request: Request) -> StreamingResponse:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        queues.add(q)

        async def stream() -> Any:
            try:
                yield b": connected\n\n"
                while True:
                    e = await q.get()
                    yield f"id: {e['id']}\nevent: bench.tick\ndata: {json.dumps(e)}\n\n".encode()
            finally:
                queues.discard(q)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def start(request: Request) -> JSONResponse:
        spec = await request.json()

        async def publish() -> None:
            for seq in range(spec["events"]):
                event = {"id": f"{seq:08d}", "data": {"seq": seq, "sent_at": time.time()}}
                for q in list(queues):
                    q.put_nowait(event)
                await asyncio.sleep(1 / spec["rate"])

        asyncio.get_running_loop().create_task(publish())
        return JSONResponse({"connections": len(queues), **server_stack()})

    return Starlette(routes=[Route("/v1/events", events), Route("/start", start, methods=["POST"])])


def ours_app(home: str) -> Any:
    """Our edge exactly as router/app.py mounts it (hub, event log, rate-limit middleware)."""
    from contextlib import AsyncExitStack, asynccontextmanager

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from router.edge.assembly import Edge
    from router.gate.gate import build_gate
    from vsm_mcp import migrate
    from vsm_mcp.bus.events import Event
    from vsm_mcp.config import load_settings
    from vsm_mcp.context import ServerContext
    from vsm_mcp.keys import Authenticator

    # One address opens every connection here, so the per-IP edge limit is lifted for the run.
    settings = load_settings(home=home, edge_rate_per_s=1e9, edge_rate_burst=10**9, sse_queue_size=256)
    migrate.upgrade(settings.migration_database_url)
    ctx = ServerContext.create(settings)
    authenticator = Authenticator(ctx.db, default_tenant="default", allow_anonymous=True)
    edge = Edge(settings, ctx)  # /v1/events behind the gate, as in the router app

    async def start(request: Request) -> JSONResponse:
        spec = await request.json()
        tenant = await ctx.default_tenant_id()

        async def publish() -> None:
            for seq in range(spec["events"]):
                await ctx.bus.publish(
                    Event(topic="bench.tick", tenant=tenant, data={"seq": seq, "sent_at": time.time()})
                )
                await asyncio.sleep(1 / spec["rate"])

        asyncio.get_running_loop().create_task(publish())
        return JSONResponse({"connections": edge.hub.connections, "direct": edge.hub.direct_connections,
                             **server_stack()})

    async def stats(_request: Request) -> JSONResponse:
        return JSONResponse({"fanout_s": edge.hub.fanout_s})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(ctx.aclose)
            await edge.start()
            stack.push_async_callback(edge.aclose)
            yield

    routes = [*edge.routes(health=False), Route("/start", start, methods=["POST"]), Route("/stats", stats)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gate = build_gate(settings, authenticator.authenticate)
    return app


def serve(kind: str, port: int, home: str) -> None:
    import uvicorn

    raise_nofile()
    app = baseline_app() if kind == "baseline" else ours_app(home)
    # As ``vsm-mcp serve`` runs it (vsm_mcp/cli.py): uvicorn's defaults, which pick uvloop and
    # httptools when installed (both are dependencies); /start reports what actually ran.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def server_stack() -> dict[str, str]:
    """The event loop and HTTP protocol this server process runs (call it from a request handler)."""
    loop = type(asyncio.get_running_loop())
    task = asyncio.current_task()
    frame = getattr(task.get_coro() if task else None, "cr_frame", None)
    cycle = frame.f_locals.get("self") if frame is not None else None  # uvicorn's RequestResponseCycle
    return {"loop": f"{loop.__module__}.{loop.__qualname__}", "http": type(cycle).__module__}


# --- clients -------------------------------------------------------------------------------

class SseClient(asyncio.Protocol):
    """One SSE connection, as cheap as a client can be: while events arrive it only keeps the
    received bytes with their arrival time and counts ``data:`` lines; parsing (and computing
    latency) happens after the run, so the receiving side adds little CPU to the shared cores."""

    REQUEST = (b"GET /v1/events?topics=bench.%23 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Accept: text/event-stream\r\n\r\n")

    def __init__(self, run: ClientRun) -> None:
        self.run = run
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received: list[tuple[float, bytes]] = []
        self.tail = b""
        self.events = 0
        self.overflowed = False
        self.finished = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        transport.write(self.REQUEST)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.received.append((now, data))
        seen = self.tail + data  # a marker split across two reads is still counted once
        self.tail = data[-15:]
        if not self.connected.done():
            if b": connected" in b"".join(d for _, d in self.received):
                self.connected.set_result(None)
            return
        self.events += seen.count(b"\ndata: ")
        if b"event: overflow" in seen:
            self.overflowed = True
            self.finish()
        elif self.events >= self.run.events:
            self.finish()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("closed before : connected"))
        self.finish()

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.run.finished += 1
            if self.run.finished == len(self.run.clients):
                self.run.done.set()

    def results(self) -> tuple[list[float], int]:
        """Latencies (ms) of the distinct events received, and how many there were."""
        buf = b""
        latencies: dict[int, float] = {}
        for at, data in self.received:
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(b"data: "):
                    body = json.loads(line[6:])["data"]
                    latencies.setdefault(body["seq"], (at - body["sent_at"]) * 1000)
        return list(latencies.values()), len(latencies)


class ClientRun:
    def __init__(self, events: int) -> None:
        self.events = events
        self.clients: list[SseClient] = []
        self.finished = 0
        self.done = asyncio.Event()


async def client_main(port: int, conns: int, events: int, deadline_s: float, poll_ms: float = 1.0) -> None:
    """Open ``conns`` SSE connections, print READY, then collect until every connection has
    ``events`` events (or the deadline); print one JSON line of results.

    With ``poll_ms`` > 0 the client reads in rounds: it naps ``poll_ms`` between two looks at its
    sockets instead of sleeping in epoll. A client that sleeps in epoll is woken for nearly every
    event (it keeps up with the server), and on loopback that wake-up is paid by the *server's*
    write and again by the client's epoll_wait — measured here, a write to a socket whose reader
    is asleep in epoll costs about twice one whose reader is busy. 10,000 real clients would sit
    on other machines and cost this one nothing; reading in rounds keeps the measuring side from
    taxing the server under test, at the price of up to ``poll_ms`` of added latency (counted in
    the figures)."""
    raise_nofile()
    loop = asyncio.get_running_loop()
    run = ClientRun(events)
    gate = asyncio.Semaphore(200)

    async def one() -> None:
        async with gate:
            for attempt in range(20):
                try:
                    _, client = await loop.create_connection(lambda: SseClient(run), "127.0.0.1", port)
                    break
                except OSError:
                    await asyncio.sleep(0.1 * (attempt + 1))
            else:
                raise SystemExit("cannot connect")
            run.clients.append(client)
            await client.connected

    await asyncio.gather(*(one() for _ in range(conns)))
    if poll_ms > 0:
        def nap() -> None:
            time.sleep(poll_ms / 1000)
            if not run.done.is_set():
                loop.call_soon(nap)  # a ready callback: the next epoll does not block

        loop.call_soon(nap)
    print("READY", flush=True)
    cpu_before = time.process_time()
    try:
        await asyncio.wait_for(run.done.wait(), deadline_s)
    except TimeoutError:
        pass
    cpu_used = time.process_time() - cpu_before  # what receiving cost this process (parsing comes after)
    latencies: list[float] = []
    delivered = 0
    for c in run.clients:
        lat, n = c.results()
        latencies += lat
        delivered += n
    print(json.dumps({"delivered": delivered, "overflows": sum(c.overflowed for c in run.clients), "cpu_s": cpu_used,
                      "latencies": [round(x, 3) for x in latencies]}), flush=True)
    # Connections stay open until the orchestrator has read the server's CPU time, so the cost of
    # tearing 10,000 connections down is not booked as delivery cost; it closes stdin when done.
    await loop.run_in_executor(None, sys.stdin.read)


# --- orchestration -------------------------------------------------------------------------

def build_c_client() -> str | None:
    """Compile benchmarks/sse_client.c into a temporary directory; None without a C compiler."""
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        print("no C compiler: using the Python client", file=sys.stderr)
        return None
    out = Path(tempfile.mkdtemp(prefix="vsm-sse-client-")) / "sse_client"
    subprocess.run([cc, "-O2", "-o", str(out), str(ROOT / "benchmarks" / "sse_client.c")], check=True)
    return str(out)


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def cpu_s(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit("server did not start")


def run_one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    port = free_port()
    home = tempfile.mkdtemp(prefix="vsm-sse-bench-")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    me = [sys.executable, str(Path(__file__).resolve())]
    server = subprocess.Popen([*me, "--serve", kind, "--port", str(port), "--home", home], env=env)
    clients: list[subprocess.Popen[bytes]] = []
    try:
        wait_port(port, server)
        with httpx.Client(timeout=30) as http:  # one warm-up connection so lazy set-up is not counted
            with http.stream("GET", f"http://127.0.0.1:{port}/v1/events") as r:
                next(r.iter_lines())
        time.sleep(0.5)
        rss_before = rss_mb(server.pid)
        per = [args.connections // args.clients + (1 if i < args.connections % args.clients else 0)
               for i in range(args.clients)]
        deadline = args.events / args.rate + 60
        for n in per:
            if args.c_client:
                cmd = [args.c_client, str(port), str(n), str(args.events), str(deadline), str(args.client_poll_ms)]
            else:
                cmd = [*me, "--client", "--port", str(port), "--conns", str(n), "--events", str(args.events),
                       "--deadline", str(deadline), "--client-poll-ms", str(args.client_poll_ms)]
            clients.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stdin=subprocess.PIPE))
        for c in clients:
            assert c.stdout is not None
            line = c.stdout.readline()
            if line.strip() != b"READY":
                raise SystemExit(f"client failed to connect: {line!r}")
        time.sleep(1.0)
        rss_after = rss_mb(server.pid)
        cpu_before = cpu_s(server.pid)
        started = httpx.post(f"http://127.0.0.1:{port}/start", json={"rate": args.rate, "events": args.events},
                             timeout=60).json()
        results = []
        for c in clients:
            assert c.stdout is not None
            results.append(json.loads(c.stdout.readline()))
        cpu_used = cpu_s(server.pid) - cpu_before
        fanout_s = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=30).json()["fanout_s"] if kind == "ours" else None
        for c in clients:
            c.communicate(timeout=60)  # closes stdin: the client closes its connections and exits
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    lat = [x for r in results for x in r["latencies"]]
    delivered = sum(r["delivered"] for r in results)
    expected = args.connections * args.events
    return {
        "connections": args.connections, "server_saw": started["connections"],
        "server_loop": started["loop"], "server_http": started["http"], "direct": started.get("direct"),
        "fanout_ms_per_event": round(fanout_s * 1000 / args.events, 2) if fanout_s is not None else None,
        "delivered": delivered, "lost": expected - delivered, "overflows": sum(r["overflows"] for r in results),
        "p50_ms": round(percentile(lat, 50), 2), "p99_ms": round(percentile(lat, 99), 2),
        "max_ms": round(max(lat), 2) if lat else None,
        "server_cpu_us_per_delivery": round(cpu_used * 1e6 / delivered, 2) if delivered else None,
        "client_cpu_us_per_delivery": round(sum(r["cpu_s"] for r in results) * 1e6 / delivered, 2) if delivered else None,
        "rss_mb": round(rss_after, 1), "kb_per_conn": round((rss_after - rss_before) * 1024 / args.connections, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--events", type=int, default=20, help="events published per run")
    p.add_argument("--rate", type=float, default=2.0, help="events per second")
    p.add_argument("--clients", type=int, default=4, help="client processes")
    p.add_argument("--client-impl", choices=["c", "python"], default="c",
                   help="load client: benchmarks/sse_client.c built with cc (the default; falls back to python "
                        "when no compiler is found) or the uvloop protocol in this file")
    p.add_argument("--client-poll-ms", type=float, default=1.0,
                   help="clients read their sockets in rounds this far apart (0: woken by every event)")
    p.add_argument("--json", action="store_true", help="print the JSON result as the last line")
    p.add_argument("--serve", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--home", default="", help=argparse.SUPPRESS)
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--conns", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=60, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.home)
        return
    if args.client:
        import uvloop  # the clients use the same loop as the servers, so neither side is handicapped

        uvloop.run(client_main(args.port, args.conns, args.events, args.deadline, args.client_poll_ms))
        return
    args.c_client = build_c_client() if args.client_impl == "c" else None
    limit = raise_nofile()
    if args.connections + 100 > limit:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {limit} is too low for {args.connections} connections")
    baseline = run_one("baseline", args)
    ours = run_one("ours", args)
    out = {
        **{k: ours[k] for k in ("connections", "delivered", "lost", "p50_ms", "p99_ms", "max_ms", "rss_mb",
                                "kb_per_conn", "overflows", "server_cpu_us_per_delivery",
                                "client_cpu_us_per_delivery")},
        "events": args.events, "rate_per_s": args.rate, "client_processes": args.clients,
        "client_impl": "c" if args.c_client else "python",
        "client_poll_ms": args.client_poll_ms,
        "fanout_ms_per_event": ours["fanout_ms_per_event"],
        "direct_connections": ours["direct"], "server_loop": ours["server_loop"], "server_http": ours["server_http"],
        "baseline_server_http": baseline["server_http"], "load_avg_1m": round(os.getloadavg()[0], 2),
        "baseline_delivered": baseline["delivered"], "baseline_lost": baseline["lost"],
        "baseline_p50_ms": baseline["p50_ms"], "baseline_p99_ms": baseline["p99_ms"],
        "baseline_server_cpu_us_per_delivery": baseline["server_cpu_us_per_delivery"],
        "baseline_rss_mb": baseline["rss_mb"], "baseline_kb_per_conn": baseline["kb_per_conn"],
        "p99_ratio": round(ours["p99_ms"] / baseline["p99_ms"], 3) if baseline["p99_ms"] else None,
        "goal_met": ours["lost"] == 0 and ours["p99_ms"] < 100 and ours["kb_per_conn"] < 20,
    }
    if not args.json:
        for name, r in (("baseline", baseline), ("ours", ours)):
            print(f"{name:9s} " + "  ".join(f"{k}={v}" for k, v in r.items()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
