"""W3C trace context end to end, and the audit trail read back (issue 19).

A trace id sent with a call — as the ``traceparent`` HTTP header or in the request's ``_meta``
(the 2026-07-28 revision's place for it) — is recorded in the call's episode, reaches the
upstream in ``_meta`` (with the router's span as the parent) and is on the ``tool.*`` event.
``GET /v1/audit`` reads the episodes back, tenant-scoped and paginated.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from tests.integration.router.conftest import serve_router, stdio_entry

pytestmark = pytest.mark.anyio

MODERN = {"accept": "application/json, text/event-stream", "content-type": "application/json",
          "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call"}
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}


def traceparent() -> tuple[str, str]:
    trace = secrets.token_hex(16)
    return trace, f"00-{trace}-{secrets.token_hex(8)}-01"


def upstream_meta(result: Any) -> dict[str, Any]:
    structured = result.get("structuredContent") if isinstance(result, dict) else result.structured_content
    return dict(structured.get("result", structured))


async def audit(http: httpx.AsyncClient, base: str, **params: Any) -> list[dict[str, Any]]:
    for _ in range(100):  # episodes are journalled at once, in the database within a flush
        r = await http.get(f"{base}/v1/audit", params=params)
        assert r.status_code == 200, r.text
        if r.json()["episodes"]:
            return list(r.json()["episodes"])
        await anyio.sleep(0.1)
    return []


async def test_trace_id_reaches_episode_upstream_meta_and_event() -> None:
    async with serve_router([stdio_entry("s")]) as (base, app):
        sub = await app.state.ctx.bus.subscribe(["tool.*"])
        events: list[Any] = []

        async def collect() -> None:
            async for event in sub:
                events.append(event)

        async with anyio.create_task_group() as tg, httpx.AsyncClient(timeout=30) as http:
            tg.start_soon(collect)
            # 1. the fast lane, trace in the HTTP header
            t1, tp1 = traceparent()
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "s__meta", "arguments": {}, "_meta": ENVELOPE}}
            r = await http.post(f"{base}/mcp", json=body,
                                headers={**MODERN, "mcp-name": "s__meta", "traceparent": tp1, "tracestate": "k=v"})
            meta1 = upstream_meta(r.json()["result"])
            # 2. the SDK path, trace in _meta
            t2, tp2 = traceparent()
            async with Client(f"{base}/mcp", mode="legacy") as c:
                res = await c.session.call_tool("s__meta", {}, meta={"traceparent": tp2})  # type: ignore[arg-type]
            meta2 = upstream_meta(res)
            # 3. REST, trace in the header
            t3, tp3 = traceparent()
            r3 = await http.post(f"{base}/v1/tools/s__meta/call", json={"arguments": {}}, headers={"traceparent": tp3})
            meta3 = upstream_meta(r3.json())
            for trace, sent, meta in ((t1, tp1, meta1), (t2, tp2, meta2), (t3, tp3, meta3)):
                got = meta["traceparent"]
                assert got.split("-")[1] == trace, (sent, meta)
                assert got != sent and got.split("-")[2] != sent.split("-")[2]  # the router's span is the parent
                [episode] = await audit(http, base, trace_id=trace)
                assert episode["public_name"] == "s__meta" and episode["outcome"] == "ok"
            assert meta1["tracestate"] == "k=v"
            for _ in range(100):
                if {t1, t2, t3} <= {e.trace_id for e in events}:
                    break
                await anyio.sleep(0.1)
            assert {t1, t2, t3} <= {e.trace_id for e in events if e.topic == "tool.called"}
            tg.cancel_scope.cancel()


async def test_audit_endpoint_filters_and_pages() -> None:
    async with serve_router([stdio_entry("s")]) as (base, _app):
        async with httpx.AsyncClient(timeout=30) as http, Client(f"{base}/mcp", mode="legacy") as c:
            for i in range(7):
                await c.call_tool("s__add", {"a": i, "b": 1})
            await c.call_tool("s__fail", {})
            adds = await audit(http, base, tool="s__add", limit=100)
            for _ in range(50):
                if len(adds) == 7:
                    break
                await anyio.sleep(0.1)
                adds = await audit(http, base, tool="s__add", limit=100)
            assert len(adds) == 7
            fails = await audit(http, base, outcome="tool_error")
            assert [e["public_name"] for e in fails] == ["s__fail"]
            seen, cursor = [], None
            while True:
                # server "s": the gate audits the reads of /v1/audit too (server "audit")
                params = {"limit": 3, "server": "s", **({"cursor": cursor} if cursor else {})}
                page = (await http.get(f"{base}/v1/audit", params=params)).json()
                seen += [e["id"] for e in page["episodes"]]
                cursor = page["next_cursor"]
                if not cursor:
                    break
            assert len(seen) == len(set(seen)) == 8
            bad = await http.get(f"{base}/v1/audit", params={"since": "yesterday"})
            assert bad.status_code == 400 and "since" in json.dumps(bad.json())


async def test_spans_for_calls_without_a_trace_and_route_metrics() -> None:
    """With span export on (VSM_OTEL_ENDPOINT; here the SDK's in-memory exporter), a call that
    came without a traceparent still gets a span, and the upstream gets it as its parent."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from vsm_mcp.tracing import CallSpans

    async with serve_router([stdio_entry("s")]) as (base, app):
        exporter = InMemorySpanExporter()
        spans = CallSpans(exporter, batch=False)
        app.state.dispatcher.add_observer(spans)
        app.state.dispatcher.propagate_new_traces = True  # what VSM_OTEL_ENDPOINT turns on
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "s__meta", "arguments": {}, "_meta": ENVELOPE}}
            r = await http.post(f"{base}/mcp", json=body, headers={**MODERN, "mcp-name": "s__meta"})
            sent = upstream_meta(r.json()["result"])["traceparent"].split("-")
            for _ in range(100):
                if exporter.get_finished_spans():
                    break
                await anyio.sleep(0.1)
            [span] = exporter.get_finished_spans()
            assert f"{span.context.trace_id:032x}" == sent[1] and f"{span.context.span_id:016x}" == sent[2]
            assert span.parent is None and span.name == "tools/call s__meta"
            await http.get(f"{base}/v1/audit")
            text = (await http.get(f"{base}/metrics")).text
        assert 'vsm_http_requests_total{method="POST",route="/mcp",status="200"}' in text
        assert 'vsm_http_requests_total{method="GET",route="/v1/audit",status="200"}' in text
        assert 'vsm_episodes{state="lost"} 0.0' in text
        spans.shutdown()
