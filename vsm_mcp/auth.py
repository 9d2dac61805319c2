"""Principals, API keys and capability grants.

An API key is ``vsm_<43 url-safe chars>``; only its sha256 is stored. A key carries scopes;
a tool carries capability tags (from its manifest). ``grants(scopes, tags)`` decides whether
a principal may call a tool before the policy server is asked:

* ``*`` or ``admin`` grants everything;
* an untagged tool needs ``tools:call``;
* a tagged tool needs, for every tag, the tag itself, ``<family>:*`` or the bare family
  (``storage:*`` and ``storage`` both cover ``storage:write``).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from vsm_mcp.errors import InvalidArguments

KEY_PREFIX = "vsm_"

SCOPE_FAMILIES: tuple[str, ...] = (
    "tools", "events", "storage", "llm", "search", "policy", "beliefs", "planner", "cms", "drive", "content", "audit",
)
SCOPE_ACTIONS: tuple[str, ...] = ("read", "write", "call", "admin", "*")
KNOWN_SCOPES: frozenset[str] = frozenset(
    {"*", "admin", *SCOPE_FAMILIES, *(f"{f}:{a}" for f in SCOPE_FAMILIES for a in SCOPE_ACTIONS)}
)
# An anonymous HTTP caller (a loopback peer without a key): tool calls and reads, never admin
# (VSM_ANONYMOUS_SCOPES). The local transports (`vsm-mcp stdio`, `vsm-mcp call`) act for the
# operator who runs them, who can read the database anyway: LOCAL_OPERATOR_SCOPES.
DEFAULT_ANONYMOUS_SCOPES: tuple[str, ...] = ("tools:call", *(f"{f}:{a}" for f in SCOPE_FAMILIES for a in ("call", "read")))
LOCAL_OPERATOR_SCOPES: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class Principal:
    """Who is calling: tenant, scopes, and the key that proved it (empty for anonymous)."""

    tenant_id: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    key_id: str = ""
    tenant_name: str = ""

    @property
    def id(self) -> str:
        return self.key_id or "anonymous"

    def to_meta(self) -> dict[str, object]:
        """The request ``_meta`` entries that carry this principal to an upstream server."""
        return {"io.vsm/tenant": self.tenant_id, "io.vsm/scopes": sorted(self.scopes), "io.vsm/key": self.key_id}


def is_admin_scope(scope: str) -> bool:
    """True for scopes that reach admin tools: ``*``, ``admin``, a whole family, ``<f>:admin``, ``<f>:*``."""
    return scope in ("*", "admin") or ":" not in scope or scope.endswith((":admin", ":*"))


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Return the scopes sorted and de-duplicated; an unknown one raises InvalidArguments naming it."""
    out = sorted({s.strip() for s in scopes if s.strip()})
    unknown = [s for s in out if s not in KNOWN_SCOPES]
    if unknown:
        raise InvalidArguments(
            f"unknown scope {unknown[0]!r}; known: *, admin, <family>, <family>:read|write|call|admin|* "
            f"with family one of {', '.join(SCOPE_FAMILIES)}"
        )
    return out


def new_api_key() -> tuple[str, str]:
    """(plaintext key, sha256 hex). The plaintext is shown once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def grants(scopes: frozenset[str], tags: Iterable[str]) -> bool:
    """True when ``scopes`` allow calling a tool with capability ``tags``."""
    if "*" in scopes or "admin" in scopes:
        return True
    tags = list(tags)
    if not tags:
        return "tools:call" in scopes or "tools:*" in scopes
    for tag in tags:
        family = tag.split(":", 1)[0]
        if not (tag in scopes or family in scopes or f"{family}:*" in scopes):
            return False
    return True
