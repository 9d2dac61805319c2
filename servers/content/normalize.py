"""Bytes → normalized text (+ title, language, links): the content a version is addressed by.

HTML: trafilatura (main content as Markdown, boilerplate dropped), falling back to the page's
whole visible text when trafilatura finds no main content (short pages); links come from the
``<a href>`` of the page. PDF: pypdf, page texts joined. Markdown and text as they are; JSON
flattened to ``path: value`` lines (searchable). The result's whitespace is normalized (NFC,
no trailing spaces, at most one blank line), so cosmetic changes do not make a new version.
A document with no text raises ``Unreadable`` with the reason — never an empty container.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin

from servers.content.language import detect_language
from servers.content.sniff import charset_of, sniff
from vsm_mcp.errors import InvalidArguments

_BLANKS = re.compile(r"\n{3,}")
_TRAILING = re.compile(r"[ \t]+\n")
_MD_TITLE = re.compile(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", re.M)
MAX_JSON_LINES = 50_000

logging.getLogger("trafilatura").setLevel(logging.ERROR)  # it logs every page without main content


class Unreadable(InvalidArguments):
    """The document could not be turned into text; the message is the reason."""


@dataclass
class Normalized:
    kind: str
    text: str
    title: str
    language: str
    links: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return content_hash(self.text)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _TRAILING.sub("\n", text + "\n")
    return _BLANKS.sub("\n\n", text).strip()


def decode(body: bytes, content_type: str = "") -> str:
    charset = charset_of(content_type) or "utf-8"
    try:
        return body.decode(charset)
    except (UnicodeDecodeError, LookupError):
        from charset_normalizer import from_bytes

        best = from_bytes(body).best()
        if best is None:
            raise Unreadable("the text is in no encoding that could be detected") from None
        return str(best)


def normalize(body: bytes, content_type: str = "", name: str = "") -> Normalized:
    """Normalize ``body``; ``name`` (URL or file name) helps sniffing and resolves relative links."""
    kind = sniff(body, content_type, name)
    if kind == "binary":
        raise Unreadable(f"unsupported content: binary data (declared {content_type or 'nothing'})")
    if not body.strip():
        raise Unreadable("the document is empty")
    title, links = "", list[str]()
    if kind == "html":
        text, title, links = _html(body, name)
    elif kind == "pdf":
        text, title = _pdf(body)
    elif kind == "json":
        text, title = _json(decode(body, content_type))
    else:
        text = decode(body, content_type)
        if kind == "markdown" and (m := _MD_TITLE.search(text)):
            title = m.group(1)
    text = clean(text)
    if not text:
        raise Unreadable(f"no text could be extracted from this {kind} document")
    if not title:
        title = text.split("\n", 1)[0].lstrip("# ").strip()[:200]
    return Normalized(kind, text, title.strip()[:500], detect_language(text), links)


def _html(body: bytes, base: str) -> tuple[str, str, list[str]]:
    import lxml.html
    import trafilatura
    from lxml import etree

    try:
        tree = lxml.html.fromstring(body)
    except (etree.ParserError, ValueError) as exc:
        raise Unreadable(f"HTML cannot be parsed: {exc}") from None
    title = (tree.findtext(".//title") or "").strip()
    links = []
    for href in tree.xpath("//a/@href"):
        href = str(href).strip()
        if href and not href.startswith(("#", "javascript:", "mailto:")):
            links.append(urldefrag(urljoin(base, href))[0])
    text = trafilatura.extract(
        body, url=base or None, output_format="markdown", include_links=False, include_images=False,
        include_comments=False, favor_recall=True, with_metadata=False,
    )
    if not text:  # no main content found (short page): keep the visible text
        for bad in tree.xpath("//script|//style|//noscript|//template"):
            bad.drop_tree()
        body_el = tree.find(".//body")
        text = (body_el if body_el is not None else tree).text_content()
    return text or "", title, list(dict.fromkeys(links))


def _pdf(body: bytes) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted:
            raise Unreadable("the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta = reader.metadata
        title = str(meta.title or "") if meta is not None else ""
    except Unreadable:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Unreadable(f"the PDF cannot be read: {exc}") from None
    text = "\n\n".join(p.strip() for p in pages)
    if not text.strip():
        raise Unreadable("the PDF has no extractable text (scanned images?)")
    return text, title


def _json(raw: str) -> tuple[str, str]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise Unreadable(f"invalid JSON: {exc}") from None
    lines: list[str] = []

    def walk(value: Any, path: str) -> None:
        if len(lines) >= MAX_JSON_LINES:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        elif value is not None and value != "":
            lines.append(f"{path}: {value}" if path else str(value))

    walk(data, "")
    title = ""
    if isinstance(data, dict):
        title = next((str(data[k]) for k in ("title", "name", "headline") if isinstance(data.get(k), str)), "")
    return "\n".join(lines), title
