"""Small parts of the notifier: backoff, Retry-After, signatures, settings parsing, channel checks."""

from __future__ import annotations

import re
import time
from email.utils import formatdate

import pytest

from vsm_mcp.bus.events import Event
from vsm_mcp.errors import ConfigError, InvalidArguments
from vsm_mcp.workers.notify.channels import check_config
from vsm_mcp.workers.notify.http_send import retry_after_s
from vsm_mcp.workers.notify.message import render
from vsm_mcp.workers.notify.outcome import backoff_s
from vsm_mcp.workers.notify.smtp import parse_smtp_url
from vsm_mcp.workers.notify.webhook import message_id, new_secret, sign, verify


def test_backoff_doubles_caps_and_honours_the_remote_hint() -> None:
    assert [backoff_s(n, 1.0, 10.0) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_s(1, 1.0, 10.0, hint_s=5.0) == 5.0
    assert backoff_s(4, 1.0, 10.0, hint_s=5.0) == 8.0
    assert backoff_s(1, 1.0, 10.0, hint_s=3600.0) == 10.0  # a hint is capped too


def test_retry_after_seconds_or_http_date() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    later = retry_after_s(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 25 <= later <= 31


def test_signature_verifies_and_detects_tampering() -> None:
    secret = new_secret()
    body = b'{"a":1}'
    ts = int(time.time())
    headers = {"webhook-id": message_id("k"), "webhook-timestamp": str(ts),
               "webhook-signature": sign(secret, message_id("k"), ts, body)}
    assert verify(secret, headers, body)
    assert not verify(secret, headers, b'{"a":2}')
    assert not verify(new_secret(), headers, body)
    assert not verify(secret, {**headers, "webhook-timestamp": str(ts - 3600)}, body)
    assert message_id("k") == message_id("k") != message_id("k2")


def test_standard_webhooks_reference_vector() -> None:
    """The example from the Standard Webhooks specification's reference libraries."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_smtp_url() -> None:
    assert parse_smtp_url("smtp://u:p%40ss@mail.example:587?starttls=true") == {
        "hostname": "mail.example", "port": 587, "username": "u", "password": "p@ss", "use_tls": False,
        "start_tls": True}
    assert parse_smtp_url("smtps://mail.example")["port"] == 465
    with pytest.raises(ConfigError, match="VSM_SMTP_URL"):
        parse_smtp_url("http://mail.example")


@pytest.mark.parametrize(
    ("kind", "config", "needle"),
    [
        ("pager", {}, "kind 'pager' is unknown"),
        ("telegram", {}, "chat_id must be"),
        ("telegram", {"chat_id": 1, "token": "x"}, "unknown setting 'token'"),
        ("webhook", {"url": "ftp://x/y"}, "url must be http(s)"),
        ("smtp", {"to": []}, "to must be a non-empty list"),
        ("smtp", {"to": ["not-an-address"]}, "to must be a non-empty list"),
    ],
)
def test_bad_channel_config_is_one_clear_line(kind: str, config: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidArguments, match=re.escape(needle)) as info:
        check_config(kind, config)
    assert "\n" not in info.value.message


def test_channel_config_is_normalised() -> None:
    assert check_config("telegram", {"chat_id": "-100"}) == {"chat_id": -100}
    assert check_config("smtp", {"to": "a@b.c"}) == {"to": ["a@b.c"]}
    assert check_config("webhook", {"url": "https://h/x"})["secret"].startswith("whsec_")


def test_render_an_alert_and_a_violation() -> None:
    alert = Event(topic="alert.t1.latency", tenant="t1", data={"kind": "latency", "status": "resolved",
                                                             "system": "upstream:s", "value": 12.5})
    m = render(alert, "acme")
    assert m.subject == "[RESOLVED] latency on upstream:s"
    assert "tenant: acme" in m.text and "value: 12.5" in m.text
    assert m.payload["id"] == alert.id and m.payload["topic"] == "alert.t1.latency"
    v = Event(topic="policy.violation", tenant="t1", data={"policy": "p", "rule": "r", "tool": "storage_delete"})
    assert render(v).subject == "[POLICY] p/r on storage_delete"
