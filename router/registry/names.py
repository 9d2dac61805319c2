"""Public names of aggregated tools and prompts: ``<server>__<tool>``.

Rules (DESIGN.md "Names"): only ``[A-Za-z0-9_-]``, at most 64 characters, so every client —
including OpenCode, which prefixes again — accepts them. Any other character becomes ``_``;
a name that would be too long is cut and ends in ``_`` + 8 hex digits of a hash of the
original ``(server, tool)`` pair. Collisions are resolved deterministically and never fatal:
pairs are processed in sorted order, the first keeps the plain name and a later one gets the
hash suffix, so the mapping depends only on the set of pairs, not on load order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable

MAX_LEN = 64
SEPARATOR = "__"
_BAD = re.compile(r"[^A-Za-z0-9_-]")
VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def sanitize(part: str) -> str:
    return _BAD.sub("_", part) or "_"


def _digest(server: str, tool: str, salt: int = 0) -> str:
    raw = f"{server}\x00{tool}\x00{salt}".encode()
    return hashlib.sha256(raw).hexdigest()[:8]


def _with_suffix(base: str, suffix: str) -> str:
    return base[: MAX_LEN - len(suffix) - 1] + "_" + suffix


def base_name(server: str, tool: str) -> str:
    """The preferred public name of ``tool`` on ``server`` (before collision handling)."""
    name = f"{sanitize(server)}{SEPARATOR}{sanitize(tool)}"
    if len(name) > MAX_LEN:
        name = _with_suffix(name, _digest(server, tool))
    return name


def assign(
    pairs: Iterable[tuple[str, str]],
    *,
    reserved: Iterable[str] = (),
    shown: Callable[[str], str] | None = None,
) -> dict[tuple[str, str], str]:
    """Map every distinct ``(server, tool)`` pair to a unique, valid public name.

    ``reserved``: names already taken (renamed tools, the global names a tenant's view keeps);
    ``shown(server)``: the server's name in public names when it differs from its id (a tenant's
    upstream runs as ``name@tenant`` but its tools are ``name__tool``).
    """
    taken: set[str] = set(reserved)
    out: dict[tuple[str, str], str] = {}
    for server, tool in sorted(set(pairs)):
        label = shown(server) if shown is not None else server
        name = base_name(label, tool)
        salt = 0
        while name in taken:
            name = _with_suffix(base_name(label, tool), _digest(server, tool, salt))
            salt += 1
        taken.add(name)
        out[(server, tool)] = name
    return out
