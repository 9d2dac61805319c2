"""Decide what kind of document some bytes are: html, pdf, markdown, json or text.

Servers mislabel (PDFs as ``application/octet-stream``, HTML as ``text/plain``), so the bytes
decide where they are unambiguous (the ``%PDF-`` signature, an HTML root element) and the
declared type or the file extension decides the rest. Anything else is ``binary`` and the
normalizer marks the document failed with that reason.
"""

from __future__ import annotations

import json
import re

KINDS = ("html", "pdf", "markdown", "json", "text")
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*(<\?xml[^>]*>\s*)?<(!doctype\s+html|html|head|body)[\s>]", re.I | re.S)
_MD_EXT = (".md", ".markdown", ".mdown")
_JSON_EXT = (".json",)
_TEXT_EXT = (".txt", ".text", ".csv", ".log", ".rst")


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def charset_of(content_type: str) -> str | None:
    m = re.search(r"charset=\"?([\w.:-]+)", content_type, re.I)
    return m.group(1) if m else None


def looks_textual(body: bytes) -> bool:
    """UTF-8 (or Latin text) without NUL and with few control characters."""
    sample = body[:4096]
    if b"\x00" in sample:
        return False
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    return controls <= len(sample) // 100


def sniff(body: bytes, declared: str = "", name: str = "") -> str:
    """One of ``KINDS`` or ``binary``. ``name`` is a URL path or file name (for its extension)."""
    head = body[:1024].lstrip(b"\xef\xbb\xbf")
    mtype = media_type(declared)
    lower = name.lower().split("?", 1)[0]
    if head.startswith(b"%PDF-"):
        return "pdf"
    if mtype == "application/pdf":
        return "pdf"  # claims PDF without the signature: pypdf decides, and fails it clearly
    if mtype in ("text/html", "application/xhtml+xml") or _HTML_START.match(head):
        return "html"
    if mtype in ("text/markdown", "text/x-markdown") or lower.endswith(_MD_EXT):
        return "markdown"
    if mtype == "application/json" or mtype.endswith("+json") or lower.endswith(_JSON_EXT):
        return "json"
    if not looks_textual(body):
        return "binary"
    if mtype.startswith("text/") or lower.endswith(_TEXT_EXT):
        return "text"
    stripped = head.strip()
    if stripped[:1] in (b"{", b"["):
        try:
            json.loads(body)
            return "json"
        except ValueError:
            pass
    return "text"
