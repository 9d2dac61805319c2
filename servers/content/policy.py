"""A container's policy (who of its tenant may read it) and capabilities (which tools may act on it).

Policy: ``{"read": [selector, …], "deny": [selector, …]}``; a selector is ``*`` (every principal
of the tenant), ``scope:<scope>`` (principals whose scopes grant that scope, by the same rule as
tool grants) or ``key:<api key id>``. A caller may read when a ``read`` selector matches and no
``deny`` selector does. Default: ``{"read": ["*"]}``.

Capabilities: the content tools that may act on the container (``container_get``,
``container_search``, ``container_versions``, ``container_delete``, ``ingest``); default all.

Search pre-filters with tags (``read:<selector>`` on every chunk, the caller's matching
selectors as ``tags_any``) so the index does the bulk of the work; the container row is the
authority and is checked again for every hit (deny selectors, capabilities, deletion, a policy
changed since the chunks were written).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vsm_mcp.auth import KNOWN_SCOPES, Principal, grants
from vsm_mcp.errors import InvalidArguments

CAPABILITIES: tuple[str, ...] = ("container_get", "container_search", "container_versions", "container_delete", "ingest")
EVERYONE = "*"


def _check_selector(sel: object, where: str) -> str:
    if not isinstance(sel, str):
        raise InvalidArguments(f"{where}: a selector must be a string")
    if sel == EVERYONE:
        return sel
    kind, _, value = sel.partition(":")
    if kind == "scope" and value in KNOWN_SCOPES:
        return sel
    if kind == "key" and value:
        return sel
    raise InvalidArguments(f"{where}: {sel!r} is not a selector; use '*', 'scope:<known scope>' or 'key:<api key id>'")


@dataclass(frozen=True)
class ContainerPolicy:
    read: tuple[str, ...] = (EVERYONE,)
    deny: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> ContainerPolicy:
        if not raw:
            return cls()
        if not isinstance(raw, Mapping):
            raise InvalidArguments("policy must be an object {read: [...], deny: [...]}")
        unknown = set(raw) - {"read", "deny"}
        if unknown:
            raise InvalidArguments(f"policy has unknown field(s): {', '.join(sorted(unknown))}")
        out = {}
        for name in ("read", "deny"):
            value = raw.get(name, [EVERYONE] if name == "read" else [])
            if isinstance(value, str) or not isinstance(value, list):
                raise InvalidArguments(f"policy.{name} must be a list of selectors")
            out[name] = tuple(sorted({_check_selector(s, f"policy.{name}") for s in value}))
        return cls(out["read"], out["deny"])

    def as_dict(self) -> dict[str, list[str]]:
        return {"read": list(self.read), "deny": list(self.deny)}

    def allows(self, principal: Principal) -> bool:
        return any(_matches(s, principal) for s in self.read) and not any(_matches(s, principal) for s in self.deny)

    def tags(self) -> list[str]:
        """The chunk tags the search pre-filter matches against ``caller_tags``."""
        return [f"read:{s}" for s in self.read]


def _matches(selector: str, principal: Principal) -> bool:
    if selector == EVERYONE:
        return True
    kind, _, value = selector.partition(":")
    if kind == "key":
        return bool(principal.key_id) and principal.key_id == value
    return grants(principal.scopes, [value])


def caller_tags(principal: Principal) -> list[str]:
    """Every ``read:`` tag whose selector matches ``principal`` (finite: scopes are a known set)."""
    tags = [f"read:{EVERYONE}"]
    if principal.key_id:
        tags.append(f"read:key:{principal.key_id}")
    tags += [f"read:scope:{s}" for s in sorted(KNOWN_SCOPES) if grants(principal.scopes, [s])]
    return tags


def parse_capabilities(raw: Iterable[str] | None) -> list[str]:
    if raw is None:
        return list(CAPABILITIES)
    if isinstance(raw, str):
        raise InvalidArguments("capabilities must be a list of tool names")
    caps = sorted(set(raw))
    unknown = [c for c in caps if c not in CAPABILITIES]
    if unknown:
        raise InvalidArguments(f"unknown capability {unknown[0]!r}; use some of {', '.join(CAPABILITIES)}")
    return caps
