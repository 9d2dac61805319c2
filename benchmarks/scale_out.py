"""Scale-out on one machine: `vsm-mcp serve` replicas on one PostgreSQL + RabbitMQ (+ Redis)
behind HAProxy (Debian's package), as compose.yaml deploys them.

Three measurements, one run:

1. **throughput** — MCP tool calls/s through the balancer with 1, 2 and 3 replicas (the same
   client load each time; on two cores the curve flattens once they are saturated — reported as
   measured, with the replica-1 figure as the baseline of the ratio);
2. **SSE across replicas** — clients on replica A (`/v1/events?topics=tool.#`) receive the
   `tool.called` events of calls made on replica B: delivery latency p50/p99 and count;
3. **kill** — writes (`beliefs__belief_assert`) and SSE clients through the balancer while one
   replica is SIGKILLed: every acknowledged write is found afterwards, and every client that
   reconnects with `Last-Event-ID` ends with every logged event (lost = 0 for both).

    .venv/bin/python benchmarks/scale_out.py [--seconds 8] [--concurrency 16] [--json]

Needs PostgreSQL on 127.0.0.1:5432 (trust), RabbitMQ on :5672, `haproxy` on PATH; Redis on
:6379 is used when present. Everything it starts it stops (process groups), and it drops its
database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
PG = dict(host="127.0.0.1", port=5432, user="postgres")
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
REDIS = "redis://127.0.0.1:6379/0"
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
        return True
    return False


class Replica:
    def __init__(self, i: int, home: Path, env: dict[str, str], command: str = "serve") -> None:
        self.command = command
        self.name = f"{'r' if command == 'serve' else 'w'}{i}"
        self.home, self.port = home / self.name, free_port()
        self.env = {**env, "VSM_HOME": str(self.home), "VSM_PORT": str(self.port)}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "serve.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "vsm_mcp.cli", self.command], env=self.env,
                                         cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    async def ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    raise SystemExit(f"{self.name} exited: {(self.home / 'serve.log').read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/readyz", timeout=2)).status_code == 200:
                        return
                await asyncio.sleep(0.3)
        raise SystemExit(f"{self.name} not ready in {timeout} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Balancer:
    """HAProxy with the replicas given, configured like deploy/haproxy.cfg (sticky MCP sessions)."""

    def __init__(self, home: Path) -> None:
        self.home, self.port = home, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, replicas: list[Replica]) -> None:
        self.stop()
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check inter 500 fall 2 rise 1" for r in replicas)
        cfg = self.home / "haproxy.cfg"
        cfg.write_text(f"""global
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    option redispatch
    retries 0
frontend vsm
    bind 127.0.0.1:{self.port}
    default_backend routers
backend routers
    balance roundrobin
    option forwardfor
    stick-table type string len 64 size 100k expire 30m
    stick store-response res.hdr(mcp-session-id)
    stick match req.hdr(mcp-session-id)
    option httpchk GET /readyz
    http-check expect status 200
{servers}
""")
        self.proc = subprocess.Popen(["haproxy", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.home / "haproxy.log", "ab"), start_new_session=True)  # noqa: SIM115
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise SystemExit(f"haproxy exited: {(self.home / 'haproxy.log').read_text()[-1000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class McpSession:
    """A minimal streamable-HTTP MCP client (JSON answers): initialize once, then tools/call."""

    def __init__(self, http: httpx.AsyncClient, base: str, key: str) -> None:
        self.http, self.url = http, f"{base}/mcp"
        self.headers = {**MCP_HEADERS, "authorization": f"Bearer {key}"}
        self.ids = iter(range(1, 1 << 30))

    async def open(self) -> None:
        r = await self.http.post(self.url, headers=self.headers, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "scale_out", "version": "1"}}})
        r.raise_for_status()
        self.headers["mcp-session-id"] = r.headers["mcp-session-id"]
        self.headers["mcp-protocol-version"] = "2025-06-18"
        await self.http.post(self.url, headers=self.headers,
                             json={"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        r = await self.http.post(self.url, headers=self.headers, json={
            "jsonrpc": "2.0", "id": next(self.ids), "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}})
        r.raise_for_status()
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else _sse_json(r.text)
        if "error" in body or body.get("result", {}).get("isError"):
            raise RuntimeError(f"{tool}: {body}")
        return body["result"]  # type: ignore[no-any-return]


def _sse_json(text: str) -> dict[str, Any]:
    for line in text.splitlines():
        if line.startswith("data:"):
            return json.loads(line[5:])  # type: ignore[no-any-return]
    raise RuntimeError(f"no JSON-RPC answer in {text[:200]!r}")


async def throughput(base: str, key: str, seconds: float, concurrency: int) -> dict[str, float]:
    done: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        async def worker() -> None:
            nonlocal errors
            s = McpSession(http, base, key)
            await s.open()
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    await s.call("beliefs__belief_stats", {})
                    done.append(time.perf_counter() - t0)
                except (RuntimeError, httpx.HTTPError):
                    errors += 1
        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.monotonic() - t0
    xs = sorted(done)
    return {"calls_per_s": round(len(xs) / wall, 1), "p50_ms": round(1000 * xs[len(xs) // 2], 2),
            "p99_ms": round(1000 * xs[int(len(xs) * 0.99) - 1], 2), "errors": errors}


async def sse_client(base: str, key: str, topics: str, sink: dict[str, float], stop: asyncio.Event,
                     reconnects: list[int]) -> None:
    """Reads events until ``stop``; reconnects with Last-Event-ID whenever the stream breaks."""
    last = ""
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as http:
        while not stop.is_set():
            headers = {"authorization": f"Bearer {key}", **({"last-event-id": last} if last else {})}
            try:
                async with http.stream("GET", f"{base}/v1/events", params={"topics": topics}, headers=headers) as r:
                    event_id = ""
                    async for line in r.aiter_lines():
                        if line.startswith("id:"):
                            event_id = line[3:].strip()
                        elif line == "" and event_id:
                            sink.setdefault(event_id, time.time())
                            last, event_id = event_id, ""
                        if stop.is_set():
                            return
            except (httpx.HTTPError, asyncio.CancelledError):
                if stop.is_set():
                    return
            reconnects.append(1)
            await asyncio.sleep(0.2)


async def sse_across(a: Replica, b: Replica, key: str, calls: int) -> dict[str, float]:
    stop = asyncio.Event()
    sinks: list[dict[str, float]] = [{} for _ in range(10)]
    clients = [asyncio.create_task(sse_client(a.url, key, "tool.#", s, stop, [])) for s in sinks]
    await asyncio.sleep(1.5)
    sent: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=30) as http:
        s = McpSession(http, b.url, key)
        await s.open()
        for i in range(calls):
            t = time.time()
            await s.call("beliefs__belief_stats", {})
            sent[str(i)] = t
            await asyncio.sleep(0.01)
    await asyncio.sleep(2)
    stop.set()
    for c in clients:
        c.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    received = [len(s) for s in sinks]
    # Latency: the n-th event a client saw against the n-th call's send time (calls are sequential).
    starts = sorted(sent.values())
    lat = []
    for sink in sinks:
        for n, at in enumerate(sorted(sink.values())[:len(starts)]):
            lat.append(1000 * (at - starts[n]))
    lat.sort()
    return {"calls_on_b": calls, "clients_on_a": len(sinks), "min_received": min(received),
            "p50_ms": round(lat[len(lat) // 2], 1) if lat else -1,
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 1) if lat else -1}


async def kill_test(lb: Balancer, victim: Replica, key: str, db: str, tenant: str, seconds: float
                    ) -> dict[str, Any]:
    stop = asyncio.Event()
    sinks: list[dict[str, float]] = [{} for _ in range(12)]
    reconnects: list[int] = []
    clients = [asyncio.create_task(sse_client(lb.url, key, "tool.#", s, stop, reconnects)) for s in sinks]
    await asyncio.sleep(1.5)
    acked: list[str] = []
    failed = 0
    t_end = time.monotonic() + seconds

    async def writer(w: int) -> None:
        nonlocal failed
        i = 0
        async with httpx.AsyncClient(timeout=30) as http:
            s = McpSession(http, lb.url, key)
            await s.open()
            while time.monotonic() < t_end:
                k = f"w{w}-{i}"
                i += 1
                try:
                    await s.call("beliefs__belief_assert", {"key": k, "value": i})
                    acked.append(k)
                except (RuntimeError, httpx.HTTPError):
                    failed += 1  # not acknowledged: the session's replica died; open a new one
                    with contextlib.suppress(RuntimeError, httpx.HTTPError):
                        s = McpSession(http, lb.url, key)
                        await s.open()
                        await asyncio.sleep(0.1)

    async def killer() -> None:
        await asyncio.sleep(seconds / 2)
        victim.stop(signal.SIGKILL)

    t_from = time.time()
    await asyncio.gather(*(writer(w) for w in range(6)), killer())
    t_to = time.time()
    await asyncio.sleep(4)  # reconnects, replays and the last flushes
    stop.set()
    for c in clients:
        c.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    conn = await asyncpg.connect(**PG, database=db)
    try:
        # Every tool event of the write phase (the clients were connected before it began).
        rows = await conn.fetch(
            "SELECT id FROM event_log WHERE tenant_id = $1 AND topic LIKE 'tool.%' AND time BETWEEN $2 AND $3",
            tenant, datetime.fromtimestamp(t_from, UTC), datetime.fromtimestamp(t_to, UTC))
        logged = {r["id"] for r in rows}
    finally:
        await conn.close()
    missing_events = [len(logged - set(s)) for s in sinks]
    found = await beliefs_present(lb.url, key, acked)
    return {"writes_acknowledged": len(acked), "writes_failed_unacknowledged": failed,
            "writes_lost": len(acked) - found, "events_logged": len(logged),
            "sse_clients": len(sinks), "sse_reconnects": len(reconnects),
            "events_missing_per_client_max": max(missing_events)}


async def beliefs_present(base: str, key: str, subjects: list[str]) -> int:
    """How many of the keys a replica (any: the CRDT converges) holds a belief for."""
    async with httpx.AsyncClient(timeout=60) as http:
        s = McpSession(http, base, key)
        await s.open()
        found = 0
        for subject in subjects:
            res = await s.call("beliefs__belief_get", {"key": subject})
            found += bool((res.get("structuredContent") or {}).get("found"))
        return found


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    name = f"vsm_scale_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(**PG, database="test")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield name
    finally:
        conn = await asyncpg.connect(**PG, database="test")
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "vsm_mcp.cli", *args], env=env, capture_output=True, text=True,
                         timeout=120)
    if out.returncode:
        raise SystemExit(f"vsm-mcp {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per throughput point and for the kill test")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="`vsm-mcp worker` processes beside the routers")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed (Debian: apt-get install haproxy)")
    tmp = Path(tempfile.mkdtemp(prefix="vsm-scale-"))
    replicas: list[Replica] = []
    workers: list[Replica] = []
    workers_alive = 0
    lb = Balancer(tmp)
    try:
        async with database() as db:
            owner = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"
            env = {**os.environ, "PYTHONPATH": str(ROOT), "VSM_MIGRATION_DATABASE_URL": owner,
                   "VSM_DATABASE_URL": owner, "VSM_HOME": str(tmp / "admin"), "HF_HUB_OFFLINE": "1",
                   "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
            cli(env, "migrate")  # also creates the default tenant
            key = cli(env, "keys", "create", "--tenant", "default", "--scopes", "*").splitlines()[-1].strip()
            conn = await asyncpg.connect(**PG, database=db)
            tenant = await conn.fetchval("SELECT id FROM tenants WHERE name = 'default'")
            await conn.close()
            app_env = {**env, "VSM_DATABASE_URL": f"postgresql+asyncpg://vsm_app@127.0.0.1:5432/{db}",
                       "VSM_BUS_URL": AMQP, "VSM_EMBEDDER": "hash", "VSM_LOG_LEVEL": "warning",
                       "VSM_RATE_LIMIT": "0", **({"VSM_REDIS_URL": REDIS} if redis_up() else {})}
            replicas = [Replica(i, tmp, app_env) for i in range(args.replicas)]
            workers = [Replica(i, tmp, app_env, "worker") for i in range(args.workers)]
            for r in replicas:
                r.start()
            await asyncio.gather(*(r.ready() for r in replicas))
            for w in workers:  # the durable queues' workers, as compose.yaml runs them beside the routers
                w.start()
            await asyncio.sleep(3)
            workers_alive = sum(w.proc is not None and w.proc.poll() is None for w in workers)
            curve = {}
            for n in range(1, len(replicas) + 1):
                lb.start(replicas[:n])
                await asyncio.sleep(1.5)  # health checks mark the servers up
                curve[str(n)] = await throughput(lb.url, key, args.seconds, args.concurrency)
            sse = await sse_across(replicas[0], replicas[-1], key, 200)
            lb.start(replicas)
            await asyncio.sleep(1.5)
            kill = await kill_test(lb, replicas[-1], key, db, tenant, args.seconds)
    finally:
        lb.stop()
        for r in [*replicas, *workers]:
            r.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    base = curve["1"]["calls_per_s"]
    result = {
        "benchmark": "scale_out", "replicas": args.replicas, "concurrency": args.concurrency,
        "cores": os.cpu_count(), "workers": args.workers, "workers_alive_after_start": workers_alive,
        "throughput": curve,
        "scaling_x": {n: round(v["calls_per_s"] / base, 2) for n, v in curve.items()},
        "sse_across_replicas": sse, "kill": kill,
        "lost": kill["writes_lost"] + kill["events_missing_per_client_max"],
    }
    if not args.json:
        for n, v in curve.items():
            print(f"  {n} replica(s): {v['calls_per_s']:>8} calls/s  p50 {v['p50_ms']} ms  p99 {v['p99_ms']} ms")
        print(f"  SSE A<-B: {sse}")
        print(f"  kill: {kill}")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
