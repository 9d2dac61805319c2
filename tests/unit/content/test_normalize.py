"""Normalization: each supported kind to text, title and language; unreadable input fails with its reason."""

from __future__ import annotations

import pytest

from servers.content.normalize import Unreadable, clean, normalize
from servers.content.sniff import sniff
from tests.content_site import make_pdf

ARTICLE = (
    "<!doctype html><html><head><title>Rivers of Europe</title><script>var x = 1;</script></head><body>"
    "<nav><a href='/'>Home</a> <a href='/about#team'>About</a></nav><article><h1>Rivers of Europe</h1>"
    + "<p>The Danube flows through ten countries and four capital cities before it reaches the Black Sea. " * 6
    + "</p><p>See <a href='rhine.html'>the Rhine</a>.</p></article><footer>Copyright</footer></body></html>"
)


def test_html_main_content_title_links_language() -> None:
    n = normalize(ARTICLE.encode(), "text/html; charset=utf-8", "https://example.org/rivers/index.html")
    assert n.kind == "html" and n.title == "Rivers of Europe" and n.language == "en"
    assert "Danube flows through ten countries" in n.text and "var x" not in n.text
    assert n.links == ["https://example.org/", "https://example.org/about", "https://example.org/rivers/rhine.html"]


def test_short_html_keeps_visible_text() -> None:
    n = normalize(b"<html><body><p>Tiny page.</p><script>no()</script></body></html>", "text/html")
    assert n.text == "Tiny page."


def test_pdf_text_and_title() -> None:
    pdf = make_pdf("Annual report", ["Revenue grew in every region this year.", "Costs fell slightly."])
    n = normalize(pdf, "application/octet-stream", "report.bin")  # mislabelled: the signature decides
    assert n.kind == "pdf" and n.title == "Annual report"
    assert "Revenue grew in every region" in n.text and "Costs fell" in n.text


def test_markdown_json_text() -> None:
    md = normalize(b"# Setup guide\n\nInstall the package, then run it.\n", "", "docs/setup.md")
    assert md.kind == "markdown" and md.title == "Setup guide"
    js = normalize(b'{"title": "Order 7", "items": [{"sku": "A1", "qty": 2}], "note": null}', "application/json")
    assert js.kind == "json" and js.title == "Order 7" and "items[0].sku: A1" in js.text and "note" not in js.text
    txt = normalize("Grüße aus Köln, wo der Dom steht und der Rhein fließt.".encode("latin-1"), "text/plain; charset=latin-1")
    assert txt.text.startswith("Grüße") and txt.language == "de"


@pytest.mark.parametrize(
    ("body", "ctype", "reason"),
    [
        (b"", "text/plain", "empty"),
        (b"\x00\x01\x02\x03\xff" * 20, "application/octet-stream", "binary"),
        (b"%PDF-1.4\nthis is not a pdf", "application/pdf", "PDF cannot be read"),
        (make_pdf("Scan", []), "application/pdf", "no extractable text"),
        (b"{not json", "application/json", "invalid JSON"),
        (b"<html><body><script>only()</script></body></html>", "text/html", "no text"),
    ],
)
def test_unreadable_documents_fail_with_the_reason(body: bytes, ctype: str, reason: str) -> None:
    with pytest.raises(Unreadable, match=reason):
        normalize(body, ctype)


def test_cosmetic_whitespace_keeps_the_hash() -> None:
    a = normalize(b"Hello world.\r\n\r\n\r\nSecond   line  \n", "text/plain")
    b = normalize(b"Hello world.\n\nSecond   line\n", "text/plain")
    assert a.sha256 == b.sha256 and clean("a \n\n\n\nb") == "a\n\nb"


def test_sniff_prefers_signatures_then_declared_then_extension() -> None:
    assert sniff(b"<!DOCTYPE html><html>", "text/plain") == "html"
    assert sniff(b"%PDF-1.7 ...", "text/html") == "pdf"
    assert sniff(b"[1, 2]", "") == "json"
    assert sniff(b"plain words", "", "notes.md") == "markdown"
    assert sniff(b"\x89PNG\r\n\x1a\n\x00\x00", "") == "binary"
