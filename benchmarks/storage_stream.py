"""Stream a large object through ``PUT/GET /v1/storage`` (file backend) vs ``cp`` of the same file.

One run, side by side: a random source file of ``--size-mb`` MiB is uploaded with ``PUT``, then
``--rounds`` times, interleaved, copied with ``cp`` (the baseline) and downloaded with ``GET`` into
a file on the same filesystem (medians reported; ``get_to_devnull_mb_s`` is the GET discarding
the bytes, i.e. the server without the client's disk writes).
The server runs in its own process (uvicorn serving the router app from router/app.py with
the storage upstream mounted, SQLite metadata) so its
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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def serve(home: str, port: int) -> None:
    """The server process: the real router app (router/app.py) with the storage upstream, anonymous on loopback."""
    sys.path.insert(0, str(ROOT))
    import uvicorn

    from router.app import create_app
    from router.upstreams.manifest import load_manifests
    from vsm_mcp import migrate
    from vsm_mcp.auth import DEFAULT_ANONYMOUS_SCOPES
    from vsm_mcp.config import load_settings

    settings = load_settings(home=home, storage_url=f"file://{home}/objects", storage_sweep_interval_s=0,
                             anonymous_scopes=[*DEFAULT_ANONYMOUS_SCOPES, "storage:write"])  # anonymous puts
    migrate.upgrade(settings.migration_database_url)
    app = create_app(settings, specs=[s for s in load_manifests() if s.name == "storage"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


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


def run(size_mb: int, rounds: int) -> dict[str, float | int | str | bool]:
    need = 4 * size_mb * MiB + 256 * MiB
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
        subprocess.run(["curl", "-sf", "-X", "PUT", "-H", "content-type: application/octet-stream",
                        "--data-binary", "warm", f"{url}/v1/storage/bench/warm"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cat", str(src)], check=True, stdout=subprocess.DEVNULL)  # both sides start page-cached
        base = rss_bytes(proc.pid)
        cp_runs, get_runs, null_runs, ok = [], [], [], True
        with RssSampler(proc.pid) as sampler:
            put_s = timed(["curl", "-sf", "-X", "PUT", "-H", "content-type: application/octet-stream",
                           "-T", str(src), f"{url}/v1/storage/bench/big.bin"])
            for _ in range(rounds):  # interleaved, so disk and CPU noise hit both sides alike
                cp_runs.append(timed(["cp", str(src), str(cp_dst)]))
                cp_dst.unlink()
                get_runs.append(timed(["curl", "-sf", "-o", str(get_dst), f"{url}/v1/storage/bench/big.bin"]))
                ok = ok and subprocess.run(["cmp", "-s", str(src), str(get_dst)]).returncode == 0
                get_dst.unlink()
                null_runs.append(timed(["curl", "-sf", "-o", "/dev/null", f"{url}/v1/storage/bench/big.bin"]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    mb = size_mb * MiB / 1e6
    cp_s, get_s, null_s = (statistics.median(x) for x in (cp_runs, get_runs, null_runs))
    return {
        "size_mib": size_mb, "rounds": rounds, "put_mb_s": round(mb / put_s, 1), "get_mb_s": round(mb / get_s, 1),
        "get_to_devnull_mb_s": round(mb / null_s, 1), "cp_mb_s": round(mb / cp_s, 1),
        "ratio_get": round(cp_s / get_s, 3), "ratio_get_devnull": round(cp_s / null_s, 3),
        "ratio_put": round(cp_s / put_s, 3),
        "server_rss_base_mb": round(base / 1e6, 1), "server_rss_peak_mb": round(sampler.peak / 1e6, 1),
        "rss_growth_mb": round((sampler.peak - base) / 1e6, 1), "bytes_identical": bool(ok),
        "client": "curl", "server": "uvicorn (h11) + router/app.py create_app, SQLite, file backend",
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved cp/GET repetitions (median taken)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = parser.parse_args()
    result = run(args.size_mb, args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")
        print(f"goal: ratio_get >= 0.5 ({result['ratio_get']}) and RSS growth < 64 MB ({result['rss_growth_mb']})")


if __name__ == "__main__":
    main()
