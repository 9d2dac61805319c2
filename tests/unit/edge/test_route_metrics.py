"""router/edge/route_metrics.py: per-route request counters and latency, labelled by the route's
template (never the raw path), in /metrics (issue 19: /metrics had no per-route HTTP figures)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from router.edge.route_metrics import RouteMetrics
from vsm_mcp.telemetry import Metrics

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def item(request: Request) -> Response:
    if request.path_params["key"] == "boom":
        raise RuntimeError("boom")
    return JSONResponse({"key": request.path_params["key"]}, status_code=201 if request.method == "PUT" else 200)


async def test_counts_by_route_template_method_and_status() -> None:
    metrics = Metrics()
    app = Starlette(routes=[Route("/v1/items/{key}", item, methods=["GET", "PUT"])])
    wrapped = RouteMetrics(app, metrics)
    transport = httpx.ASGITransport(app=wrapped, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for key in ("a", "b", "c"):
            assert (await c.get(f"/v1/items/{key}")).status_code == 200
        assert (await c.put("/v1/items/z")).status_code == 201
        assert (await c.get("/nowhere/1")).status_code == 404
        assert (await c.get("/v1/items/boom")).status_code == 500
    text = metrics.render().decode()
    assert 'vsm_http_requests_total{method="GET",route="/v1/items/{key}",status="200"} 3.0' in text
    assert 'vsm_http_requests_total{method="PUT",route="/v1/items/{key}",status="201"} 1.0' in text
    assert 'vsm_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert 'vsm_http_requests_total{method="GET",route="/v1/items/{key}",status="500"} 1.0' in text
    assert 'vsm_http_request_duration_seconds_count{method="GET",route="/v1/items/{key}"} 4.0' in text
    assert "/v1/items/a" not in text


async def test_fixed_route_for_a_fast_lane() -> None:
    metrics = Metrics()

    async def raw(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    transport = httpx.ASGITransport(app=RouteMetrics(raw, metrics, route="/mcp"))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        await c.post("/mcp", content=b"{}")
    assert 'vsm_http_requests_total{method="POST",route="/mcp",status="200"} 1.0' in metrics.render().decode()
