"""Browser rules: Host allow-list, Origin allow-list, CSRF on simple bodies, CORS origins."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from router.gate.browser import BrowserRules, is_simple_body, normalize_origin


def test_loopback_bind_accepts_only_loopback_hosts() -> None:
    rules = BrowserRules(loopback_bind=True)
    assert rules.check("GET", b"127.0.0.1:8765", None, None, False) is None
    assert rules.check("GET", b"localhost", None, None, False) is None
    assert rules.check("GET", b"[::1]:8765", None, None, False) is None
    refused = rules.check("GET", b"evil.example.com", None, None, False)
    assert refused is not None and "evil.example.com" in refused.message
    assert rules.check("GET", None, None, None, False) is not None


def test_wide_bind_accepts_any_host_unless_listed() -> None:
    assert BrowserRules(loopback_bind=False).check("GET", b"gw.example.com", None, None, False) is None
    listed = BrowserRules(loopback_bind=False, allowed_hosts=["gw.example.com"])
    assert listed.check("GET", b"gw.example.com:443", None, None, False) is None
    assert listed.check("GET", b"other.example.com", None, None, False) is not None
    assert BrowserRules(loopback_bind=True, allowed_hosts=["*"]).check("GET", b"x.y", None, None, False) is None


def test_foreign_origin_is_refused_own_and_listed_are_not() -> None:
    rules = BrowserRules(loopback_bind=True, cors_origins=["https://app.example.com"])
    host = b"127.0.0.1:8765"
    assert rules.check("POST", host, b"http://evil.example.com", b"application/json", False) is not None
    assert rules.check("POST", host, b"null", b"application/json", False) is not None
    assert rules.check("POST", host, b"http://localhost:3000", b"application/json", True) is not None
    assert rules.check("POST", host, b"http://127.0.0.1:8765", b"text/plain", False) is None  # same origin
    assert rules.check("POST", host, b"https://app.example.com", b"text/plain", False) is None
    assert rules.check("GET", host, b"https://app.example.com:443", None, False) is None


def test_simple_bodies_without_a_key_are_refused_on_unsafe_methods() -> None:
    rules = BrowserRules(loopback_bind=True)
    host = b"127.0.0.1:8765"
    for ctype in (b"text/plain", b"text/plain;charset=UTF-8", b"application/x-www-form-urlencoded",
                  b"multipart/form-data; boundary=x", None):
        for method in ("POST", "PUT", "DELETE"):
            assert rules.check(method, host, None, ctype, False) is not None, (method, ctype)
            assert rules.check(method, host, None, ctype, True) is None  # a key: any content type
        assert rules.check("GET", host, None, ctype, False) is None
    assert rules.check("POST", host, None, b"application/json", False) is None


def test_cors_answers_only_listed_origins() -> None:
    rules = BrowserRules(loopback_bind=True, cors_origins=["https://app.example.com/"])
    assert rules.cors_origin(b"https://app.example.com") == "https://app.example.com"
    assert rules.cors_origin(b"https://evil.example.com") is None
    assert BrowserRules(loopback_bind=True).cors_origin(b"http://127.0.0.1:8765") is None


@given(st.sampled_from(["http", "https"]), st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,5}){0,2}", fullmatch=True),
       st.one_of(st.none(), st.integers(1, 65535)))
def test_normalize_origin_is_idempotent(scheme: str, host: str, port: int | None) -> None:
    origin = f"{scheme}://{host}" + (f":{port}" if port else "")
    once = normalize_origin(origin)
    assert once and normalize_origin(once) == once


def test_simple_body_types() -> None:
    assert is_simple_body(None) and is_simple_body(b"TEXT/PLAIN ; charset=x")
    assert not is_simple_body(b"application/json") and not is_simple_body(b"application/octet-stream")
