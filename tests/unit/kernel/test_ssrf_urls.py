"""The URL half of the SSRF guard: which URLs may be checked at all, and where a checked one connects."""

from __future__ import annotations

import ipaddress

import pytest

from vsm_mcp.errors import InvalidArguments
from vsm_mcp.ssrf import WEB_PORTS, Target, split_url


def _split(url: str) -> tuple[str, str, int]:
    return split_url(url, WEB_PORTS, where="seed", wanted="an http(s) page", credentials="use a connector")


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.org/x", "seed: an http(s) page, got 'ftp://example.org/x'"),
    ("http:///nohost", "seed: URL 'http:///nohost' has no host"),
    ("https://u:p@example.org/", "seed: URL 'https://u:p@example.org/' carries credentials; use a connector"),
    ("http://example.org:99999/", "seed: invalid URL 'http://example.org:99999/': "),
])
def test_each_refusal_says_what_and_where(url: str, message: str) -> None:
    with pytest.raises(InvalidArguments) as info:
        _split(url)
    assert info.value.message.startswith(message)


def test_default_port_comes_from_the_scheme_map() -> None:
    assert _split("https://Example.org/a") == ("https", "example.org", 443)
    assert _split("http://example.org:8080/") == ("http", "example.org", 8080)


def test_pinned_url_swaps_the_host_for_the_checked_address() -> None:
    v6 = Target("example.org", 443, ipaddress.ip_address("2001:db8::1"))
    assert v6.pinned_url("https://example.org/a?b=1#frag") == "https://[2001:db8::1]:443/a?b=1"
    v4 = Target("example.org", 80, ipaddress.ip_address("93.184.216.34"))
    assert v4.pinned_url("http://example.org") == "http://93.184.216.34:80/"
