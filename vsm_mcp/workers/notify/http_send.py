"""One HTTP POST for a notification, with its outcome mapped to vsm_mcp/workers/notify/outcome.py."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

from vsm_mcp.workers.notify.outcome import MaybeDelivered, Rejected, RetryLater


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def post(
    client: httpx.AsyncClient, url: str, *, content: bytes, headers: dict[str, str], what: str
) -> httpx.Response:
    """POST; transport failures raise a DeliveryError, any HTTP answer is returned."""
    try:
        return await client.post(url, content=content, headers=headers)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise RetryLater(f"{what}: cannot connect ({type(exc).__name__}: {exc})") from None
    except httpx.HTTPError as exc:  # sent, no answer: it may have arrived
        raise MaybeDelivered(f"{what}: no answer after sending ({type(exc).__name__}: {exc})") from None


def check(resp: httpx.Response, what: str, hint_s: float | None = None) -> None:
    """Raise for a non-2xx answer: 429 and 5xx → RetryLater (Retry-After or ``hint_s``), else Rejected."""
    if 200 <= resp.status_code < 300:
        return
    detail = f"{what}: HTTP {resp.status_code} {_snippet(resp)}"
    if resp.status_code == 429 or resp.status_code >= 500:
        after = retry_after_s(resp.headers.get("retry-after"))
        raise RetryLater(detail, after if after is not None else hint_s)
    raise Rejected(detail)


def _snippet(resp: httpx.Response) -> str:
    text = resp.text.strip().replace("\n", " ")
    return text[:200]


def json_body(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
