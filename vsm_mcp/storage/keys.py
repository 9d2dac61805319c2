"""Object key and bucket name validation — the first line against path traversal.

A key is a ``/``-separated relative path of at most ``MAX_KEY_BYTES`` UTF-8 bytes. Rejected,
each with an InvalidArguments naming the rule: empty keys, absolute paths (``/x``, ``C:x``,
``\\\\host``), backslashes, ``.``/``..``/empty segments, NUL and other control characters,
segments longer than a file name may be. The file backend checks again that the resolved
path stays under its root (defence in depth), so a bug here still cannot escape.
"""

from __future__ import annotations

import re
import unicodedata

from vsm_mcp.errors import InvalidArguments

MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _bad(key: str, why: str) -> InvalidArguments:
    shown = key if len(key) <= 80 else key[:77] + "..."
    return InvalidArguments(f"invalid object key {shown!r}: {why}", data={"field": "key"})


def validate_key(key: object) -> str:
    """Return ``key`` unchanged when it is a safe relative object key, else raise InvalidArguments."""
    if not isinstance(key, str):
        raise InvalidArguments("invalid object key: must be a string", data={"field": "key"})
    if not key:
        raise _bad(key, "must not be empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise _bad(key, f"longer than {MAX_KEY_BYTES} bytes")
    for ch in key:
        # Cc = control characters (NUL, newline, DEL, C1 …); Cs = lone surrogates (not UTF-8).
        if unicodedata.category(ch) in {"Cc", "Cs"}:
            raise _bad(key, f"contains the control character U+{ord(ch):04X}")
    if "\\" in key:
        raise _bad(key, "contains a backslash; use '/' to separate segments")
    if key.startswith("/") or _DRIVE.match(key):
        raise _bad(key, "must be a relative path (no leading '/' or drive letter)")
    for segment in key.split("/"):
        if segment in {"", ".", ".."}:
            raise _bad(key, "has an empty, '.' or '..' segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise _bad(key, f"has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    return key


def validate_prefix(prefix: object) -> str:
    """A listing prefix: empty, or a key prefix (may end in ``/``), with the same safety rules."""
    if prefix in ("", None):
        return ""
    if not isinstance(prefix, str):
        raise InvalidArguments("invalid prefix: must be a string", data={"field": "prefix"})
    try:
        validate_key(prefix.removesuffix("/"))  # "/" alone leaves "" and is refused like any absolute path
    except InvalidArguments as exc:
        raise InvalidArguments(exc.message.replace("object key", "prefix", 1), data={"field": "prefix"}) from None
    return prefix


def validate_bucket(name: object) -> str:
    """Bucket names: 1-63 of lowercase letters, digits, '-' and '_', starting with a letter or digit."""
    if not isinstance(name, str) or not _BUCKET.match(name):
        raise InvalidArguments(
            f"invalid bucket name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit",
            data={"field": "bucket"},
        )
    return name
