"""The connector HTTP client's rate-limit handling and the ${ENV} credential rules."""

from __future__ import annotations

import email.utils
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.asgi_server import serve_asgi
from vsm_mcp.connectors.credentials import check_refs, resolve
from vsm_mcp.connectors.http import ConnectorAuthError, ConnectorError, GuardedHttp, RetryPolicy, retry_after
from vsm_mcp.errors import ConfigError, InvalidArguments
from vsm_mcp.ssrf import FetchRefused


@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_seconds(n: int) -> None:
    assert retry_after(str(n)) == float(n)


@given(st.integers(min_value=-10**5, max_value=10**5))
def test_retry_after_http_date_is_never_negative(delta: int) -> None:
    now = 1_800_000_000.0
    got = retry_after(email.utils.formatdate(now + delta, usegmt=True), now=now)
    assert got is not None and got == max(0.0, float(delta))


def test_retry_after_garbage_is_none() -> None:
    assert retry_after("soon") is None and retry_after("") is None and retry_after(None) is None


def test_credentials_must_be_references(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArguments, match="connector 'c': credential 'token' must be an environment reference"):
        check_refs("c", {"token": "sk-live-123"})
    with pytest.raises(InvalidArguments):
        check_refs("c", {"token": "prefix-${TOKEN}"})  # only whole references: no secret glued to one
    refs = check_refs("c", {"token": " ${CONN_T} "})
    assert refs == {"token": "${CONN_T}"}
    with pytest.raises(ConfigError, match=r"refers to \$\{CONN_T\}, which is not set"):
        resolve("c", refs)
    monkeypatch.setenv("CONN_T", "s3cret")
    assert resolve("c", refs) == {"token": "s3cret"}


@pytest.mark.anyio
async def test_429_storm_honours_retry_after_then_401_is_one_line() -> None:
    answers = [429, 503, 429, 200, 401]
    seen: list[float] = []

    async def endpoint(_request: Request) -> JSONResponse:
        seen.append(time.monotonic())
        code = answers.pop(0)
        return JSONResponse({"code": code}, code, headers={"retry-after": "1"} if code == 429 else {})

    async with serve_asgi(Starlette(routes=[Route("/x", endpoint)])) as base:
        http = GuardedHttp(["127.0.0.1/32"], retry=RetryPolicy(max_retries=5, backoff_s=0.01, max_wait_s=0.3))
        try:
            resp = await http.request("c1", "GET", base + "/x")
            assert resp.status == 200 and http.retries == 3
            assert seen[1] - seen[0] >= 0.25  # Retry-After: 1, capped by max_wait_s=0.3
            with pytest.raises(ConnectorAuthError, match=r"^connector 'c1': .* refused the credentials \(HTTP 401\)"):
                await http.request("c1", "GET", base + "/x")
        finally:
            await http.aclose()


@pytest.mark.anyio
async def test_retries_run_out_and_the_guard_refuses_loopback() -> None:
    async def endpoint(_request: Request) -> JSONResponse:
        return JSONResponse({}, 429, headers={"retry-after": "0"})

    async with serve_asgi(Starlette(routes=[Route("/x", endpoint)])) as base:
        http = GuardedHttp(["127.0.0.1/32"], retry=RetryPolicy(max_retries=2, backoff_s=0.0))
        closed = GuardedHttp([])
        try:
            with pytest.raises(ConnectorError, match="answered HTTP 429 after 2 retries"):
                await http.request("c2", "GET", base + "/x")
            with pytest.raises(FetchRefused, match="VSM_FETCH_ALLOW"):
                await closed.request("c2", "GET", base + "/x")
        finally:
            await http.aclose()
            await closed.aclose()
