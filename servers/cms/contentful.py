"""Contentful Sync API (Content Delivery API): ``/spaces/{space}/environments/{env}/sync``.

Auth: a Content Delivery API token as ``Authorization: Bearer`` (credential ``token``, a
``${ENV}`` reference). Options: ``space`` (required), ``environment`` (default ``master``).

Incremental: the first sync is ``initial=true`` (with ``limit`` items per page); each answer
holds either ``nextPageUrl`` (more pages of this sync) or ``nextSyncToken`` (the sync is
complete: keep it for the next one). The token in either URL goes in ``sync_token=``.
Deletions come in the feed as ``DeletedEntry`` items (by ``sys.id``), so no sweep is needed.
Assets (and ``DeletedAsset``) are skipped: only entries become containers. Rate limits: 429
with ``X-Contentful-RateLimit-Reset`` (seconds), honoured like ``Retry-After``.

Cursor: ``{"token"}`` at rest (the last ``nextSyncToken``); during a sync ``{"token", "next"}``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from vsm_mcp.connectors.base import Change, Page, Source
from vsm_mcp.connectors.http import GuardedHttp
from vsm_mcp.errors import InvalidArguments


def _token_of(url: str) -> str:
    values = parse_qs(urlsplit(url).query).get("sync_token") or [""]
    return values[0]


def _strings(value: Any) -> list[str]:
    """Text of a field value: a string, a list of them, or rich text (its ``value`` nodes)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        if value.get("nodeType") == "text":
            return [str(value.get("value", ""))]
        return [s for v in value.get("content", []) for s in _strings(v)] if "content" in value else []
    return []


class Contentful:
    type = "contentful"

    def validate(self, base_url: str, credentials: dict[str, str], options: dict[str, Any]) -> None:
        if not options.get("space"):
            raise InvalidArguments("contentful needs options.space (the space id)")
        if not credentials.get("token"):
            raise InvalidArguments("contentful needs credentials.token (a Content Delivery API token as ${ENV})")

    async def page(self, http: GuardedHttp, source: Source, cursor: dict[str, Any] | None) -> Page:
        cur = dict(cursor or {})
        env = source.options.get("environment") or "master"
        url = f"{source.base_url}/spaces/{source.options['space']}/environments/{env}/sync"
        if cur.get("next"):
            params: dict[str, Any] = {"sync_token": cur["next"]}
        elif cur.get("token"):
            params = {"sync_token": cur["token"]}
        else:
            params = {"initial": "true", "limit": min(source.page_size, 1000)}
        resp = await http.request(source.name, "GET", url, params=params,
                                  headers={"authorization": f"Bearer {source.credentials['token']}"})
        body = resp.json()
        changes = [c for c in (self._change(it) for it in body.get("items", [])) if c is not None]
        if body.get("nextPageUrl"):
            return Page(changes, {"token": cur.get("token"), "next": _token_of(body["nextPageUrl"])}, done=False)
        token = body.get("nextSyncToken") or _token_of(str(body.get("nextSyncUrl", "")))
        return Page(changes, {"token": token}, done=True)

    @staticmethod
    def _change(item: dict[str, Any]) -> Change | None:
        sys = item.get("sys") or {}
        kind, ident = sys.get("type"), str(sys.get("id", ""))
        if kind == "DeletedEntry":
            return Change(external_id=f"entry/{ident}", deleted=True)
        if kind != "Entry":
            return None
        fields: dict[str, Any] = item.get("fields") or {}
        texts: dict[str, list[str]] = {}
        for name, by_locale in fields.items():
            for value in (by_locale or {}).values() if isinstance(by_locale, dict) else [by_locale]:
                texts.setdefault(name, []).extend(_strings(value))
        title = next(iter(texts.get("title") or texts.get("name") or [""]))
        body = "\n\n".join(s for name, values in texts.items() for s in values if name not in ("title", "name"))
        ctype = ((sys.get("contentType") or {}).get("sys") or {}).get("id", "")
        return Change(
            external_id=f"entry/{ident}", title=title, text=f"{title}\n\n{body}".strip() or ident,
            content_type="text/plain", modified=str(sys.get("updatedAt", "")),
            meta={"content_type_id": ctype, "revision": sys.get("revision")},
        )
