"""HMAC-signed webhooks, following the Standard Webhooks signature scheme
(https://www.standardwebhooks.com): headers ``webhook-id`` (derived from the idempotency key, stable
across retries — receivers deduplicate on it), ``webhook-timestamp`` (unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``.

A secret ``whsec_<base64>`` is used as the decoded bytes (the scheme's convention); any other
string as its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx

from vsm_mcp.workers.notify.http_send import check, post
from vsm_mcp.workers.notify.message import Message

SECRET_PREFIX = "whsec_"


def message_id(key: str) -> str:
    """``webhook-id`` of an idempotency key: stable, ASCII, short."""
    return "msg_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: float = 300) -> bool:
    """Check a delivery as a receiver would (used by tests and documented for receivers)."""
    try:
        msg_id, ts = headers["webhook-id"], int(headers["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    expected = sign(secret, msg_id, ts, body)
    return any(hmac.compare_digest(expected, sig) for sig in headers.get("webhook-signature", "").split())


class WebhookSender:
    kind = "webhook"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, config: dict[str, Any], message: Message, key: str) -> str:
        body = json.dumps(message.payload, separators=(",", ":"), sort_keys=True).encode()
        ts = int(time.time())
        msg_id = message_id(key)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(str(config["secret"]), msg_id, ts, body),
            "user-agent": "vsm-mcp-notifier",
        }
        what = f"webhook {config['url']}"
        resp = await post(self.client, str(config["url"]), content=body, headers=headers, what=what)
        check(resp, what)
        return str(resp.headers.get("x-request-id", ""))
