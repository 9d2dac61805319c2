"""`vsm-mcp stdio` answers ``initialize`` and ``tools/list`` without loading what only some tools
use: a client waits for that answer before it shows any tool, so every library a start-up loads
for nothing is paid by every launch (benchmarks/stdio_startup.py measures it).

The real command with the default manifests (every built-in server), driven over its stdin and
stdout; when it exits, a wrapper reports what was loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Each is needed by some tools only: the first call that needs it loads it.
NOT_AT_START = (
    "jsonschema",  # explains a rejected argument / checks a plan's steps (router/arg_schema.py, planner)
    "opentelemetry.sdk.trace",  # only with VSM_OTEL_ENDPOINT (vsm_mcp/tracing.py)
    "litellm",  # the LLM-CDN's provider calls
    "onnxruntime",  # the ONNX embedder, at the first search
    "trafilatura",  # content extraction, at the first ingest
    "pypdf",  # PDF ingest
)

WRAPPER = """
import atexit, json, os, sys

def report():
    from celpy.celparser import CELParser
    loaded = sorted(m for m in json.loads(os.environ["NOT_AT_START"]) if m in sys.modules)
    with open(os.environ["REPORT"], "w") as f:
        json.dump({"loaded": loaded, "cel_parser_built": CELParser.CEL_PARSER is not None}, f)

atexit.register(report)
sys.argv = ["vsm-mcp", "stdio"]
from vsm_mcp.cli import main
main()
"""


def rpc(proc: subprocess.Popen[bytes], message: dict[str, object]) -> dict[str, object]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()
    answer: dict[str, object] = json.loads(proc.stdout.readline())
    return answer


def test_initialize_and_tools_list_load_no_tool_only_library(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSM_")}
    env |= {"VSM_HOME": str(tmp_path / ".vsm"), "PYTHONPATH": str(ROOT), "REPORT": str(tmp_path / "report.json"),
            "NOT_AT_START": json.dumps(NOT_AT_START)}
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        init = rpc(proc, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}})
        assert "result" in init, init
        assert proc.stdin is not None
        proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        listed = rpc(proc, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        names = {t["name"] for t in listed["result"]["tools"]}  # type: ignore[index]
        assert {"cep__cep_rule_put", "planner__plan_create", "search__search", "find_tools"} <= names
    finally:
        _, stderr = proc.communicate(timeout=90)  # closes stdin: the server exits, the wrapper reports
    assert proc.returncode == 0, stderr.decode()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report == {"loaded": [], "cel_parser_built": False}
