"""Stream a large object through ``PUT/GET /v1/storage`` (file backend) vs ``cp`` of the same file.

One run, side by side: a random source file of ``--size-mb`` MiB is copied with ``cp`` (the
baseline), uploaded with ``PUT``, downloaded with ``GET`` into a file on the same filesystem.
The server runs in its own process (uvicorn, the storage edge routes, SQLite metadata) so its
RSS can be sampled every 20 ms during the transfers; the client is ``curl`` (so the figures
measure our server, not a Python HTTP client). Peak RSS growth is over the server's RSS right
before the transfers. Everything lives in a temp directory that is removed at the end.

    python benchmarks/storage_stream.py [--size-mb 1024] [--json]

Goal (issue 7): ratio_get = get_mb_s / cp_mb_s >= 0.5 and peak RSS growth < 64 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def serve(home: str, port: int) -> None:
    """The server process: the storage edge routes in a bare Starlette app, anonymous on loopback."""
    sys.path.insert(0, str(ROOT))
    import uvicorn
    from starlette.applications import Starlette

    from router.edge.storage_http import storage_routes
    from vsm_mcp import migrate
    from vsm_mcp.config import load_settings
    from vsm_mcp.context import ServerContext
    from vsm_mcp.tenants import Authenticator

    settings = load_settings(home=home, storage_url=f"file://{home}/objects")
    migrate.upgrade(settings.migration_database_url)
    ctx = ServerContext.create(settings)
    auth = Authenticator(ctx.db, default_tenant="default", allow_anonymous=True)

    async def authenticate(conn):  # type: ignore[no-untyped-def]
        return await auth.authenticate(conn.headers.get("authorization"))

    app = Starlette(routes=storage_routes(ctx, authenticate))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit("server exited early")
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def run(size_mb: int) -> dict[str, float | int | str | bool]:
    need = 3 * size_mb * MiB + 256 * MiB
    work = Path(tempfile.mkdtemp(prefix="vsm-storage-bench-"))
    if shutil.disk_usage(work).free < need:
        shutil.rmtree(work)
        raise SystemExit(f"need {need // MiB} MiB free in {work.parent}")
    src, cp_dst, get_dst = work / "src.bin", work / "cp.bin", work / "get.bin"
    with open(src, "wb") as fh:
        block = os.urandom(4 * MiB)
        for i in range(0, size_mb, 4):
            fh.write(block[: min(4, size_mb - i) * MiB])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(work / "home"), str(port)], cwd=work)
    try:
        wait_up(url, proc)
        subprocess.run(["curl", "-sf", "-X", "PUT", "--data-binary", "warm", f"{url}/v1/storage/bench/warm"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cat", str(src)], check=True, stdout=subprocess.DEVNULL)  # both sides start page-cached
        cp_s = timed(["cp", str(src), str(cp_dst)])
        cp_dst.unlink()
        base = rss_bytes(proc.pid)
        with RssSampler(proc.pid) as sampler:
            put_s = timed(["curl", "-sf", "-X", "PUT", "-H", "content-type: application/octet-stream",
                           "-T", str(src), f"{url}/v1/storage/bench/big.bin"])
            get_s = timed(["curl", "-sf", "-o", str(get_dst), f"{url}/v1/storage/bench/big.bin"])
        ok = subprocess.run(["cmp", "-s", str(src), str(get_dst)]).returncode == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    mb = size_mb * MiB / 1e6
    return {
        "size_mib": size_mb, "put_mb_s": round(mb / put_s, 1), "get_mb_s": round(mb / get_s, 1),
        "cp_mb_s": round(mb / cp_s, 1), "ratio_get": round(cp_s / get_s, 3), "ratio_put": round(cp_s / put_s, 3),
        "server_rss_base_mb": round(base / 1e6, 1), "server_rss_peak_mb": round(sampler.peak / 1e6, 1),
        "rss_growth_mb": round((sampler.peak - base) / 1e6, 1), "bytes_identical": bool(ok),
        "client": "curl", "server": "uvicorn (h11) + storage edge routes, SQLite, file backend",
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = parser.parse_args()
    result = run(args.size_mb)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")
        print(f"goal: ratio_get >= 0.5 ({result['ratio_get']}) and RSS growth < 64 MB ({result['rss_growth_mb']})")


if __name__ == "__main__":
    main()
