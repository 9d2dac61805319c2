"""router/upstreams/http_session.py: a sessionless tools/call against a scripted HTTP server — what is
sent, and what each kind of answer becomes (passed through as JSON, typed, or an error)."""

from __future__ import annotations

import json

import mcp.types as mt
import pytest
from mcp.shared.exceptions import MCPError

from router.upstreams.http_session import RawHttpSession
from tests.unit.router.test_http11 import scripted

pytestmark = pytest.mark.anyio


def answer(result: object) -> list[bytes]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, **({"result": result} if "err" != result else
                                                      {"error": {"code": -32602, "message": "bad name"}})}).encode()
    return [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)]


async def call(result: object, *, as_json: bool) -> tuple[object, bytes]:
    async with scripted(lambda request, n: answer(result)) as (url, seen, _):
        session = RawHttpSession("up", url, {"authorization": "Bearer k"}, timeout=5)
        session.modern = True  # as if server/discover had said so
        try:
            return await session.call_tool("echo", {"text": "hi"}, {"k": 1}, None, as_json=as_json), seen[0]
        finally:
            await session._http.aclose()  # noqa: SLF001 — open() was never called: nothing to DELETE
            session._pool.close()  # noqa: SLF001


async def test_a_result_is_passed_through_as_it_came_or_typed() -> None:
    result = {"content": [{"type": "text", "text": "hi"}], "isError": False, "vendorField": {"x": 1}}
    raw, request = await call(result, as_json=True)
    assert raw == result  # unknown fields kept: the proxy does not re-model the answer
    head, _, body = request.partition(b"\r\n\r\n")
    head += b"\r\n"
    assert b"mcp-method: tools/call\r\n" in head and b"mcp-name: echo\r\n" in head
    assert b"authorization: Bearer k\r\n" in head
    sent = json.loads(body)
    assert sent["params"]["_meta"]["k"] == 1
    assert sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    typed, _ = await call(result, as_json=False)
    assert isinstance(typed, mt.CallToolResult) and typed.content[0].text == "hi"  # type: ignore[union-attr]


@pytest.mark.parametrize("result", [{}, {"content": "not a list"}, ["a"]])
async def test_a_result_without_a_content_list_is_an_error(result: object) -> None:
    with pytest.raises(MCPError, match="content list"):
        await call(result, as_json=True)


async def test_a_jsonrpc_error_keeps_its_code() -> None:
    with pytest.raises(MCPError) as err:
        await call("err", as_json=True)
    assert err.value.error.code == -32602 and "bad name" in err.value.error.message
