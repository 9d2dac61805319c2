"""Ghost Content API (``/ghost/api/content/posts/`` and ``/pages/``), a content API key.

Auth: the Content API key in the ``key`` query parameter (credential ``key``, a ``${ENV}``
reference; the client never puts a query string in an error line). Incremental:
``filter=updated_at:>'<since>'`` (NQL, UTC ``YYYY-MM-DD HH:MM:SS``; less one second, as for
WordPress), ``order=updated_at asc``, ``limit`` and ``page`` until ``meta.pagination.pages``.
Deletions: no feed (an unpublished or deleted post just leaves the Content API), so each sync
ends with a sweep of the ids still listed (``fields=id``), like WordPress.

Cursor: ``{"since"}`` at rest; during a sync ``phase`` (``changes`` | ``ids``), ``kind``,
``page`` and ``max``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from servers.cms.walk import Walk
from vsm_mcp.connectors.base import Change, Page, Source
from vsm_mcp.connectors.http import GuardedHttp
from vsm_mcp.errors import InvalidArguments

KINDS = ("posts", "pages")


def _nql_time(stamp: str) -> str:
    """Ghost's ``updated_at`` (ISO with offset) minus one second, as NQL wants it (UTC)."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) - timedelta(seconds=1)
    except ValueError:
        return stamp
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class Ghost:
    type = "ghost"

    def validate(self, base_url: str, credentials: dict[str, str], options: dict[str, Any]) -> None:
        if not credentials.get("key"):
            raise InvalidArguments("ghost needs credentials.key (a Content API key as ${ENV})")

    async def page(self, http: GuardedHttp, source: Source, cursor: dict[str, Any] | None) -> Page:
        walk = Walk(cursor, len(KINDS), page=1)
        kind = KINDS[walk.kind]
        url = f"{source.base_url}/ghost/api/content/{kind}/"
        params: dict[str, Any] = {"key": source.credentials["key"], "page": walk.cur["page"]}
        if walk.phase == "changes":
            params |= {"limit": min(source.page_size, 100), "order": "updated_at asc", "formats": "html"}
            if walk.cur.get("since"):
                params["filter"] = f"updated_at:>'{_nql_time(walk.cur['since'])}'"
            body = (await http.request(source.name, "GET", url, params=params)).json()
            rows = body.get(kind, [])
            changes = [Change(external_id=f"{kind[:-1]}/{r['id']}", title=str(r.get("title", "")),
                              text=f"<html><body><h1>{r.get('title', '')}</h1>{r.get('html') or ''}</body></html>",
                              content_type="text/html", url=str(r.get("url", "")), modified=str(r.get("updated_at", "")),
                              meta={"slug": r.get("slug", "")}) for r in rows]
            return walk.changed(changes, walk.page_after(_pages(body)))
        params |= {"limit": 100, "fields": "id"}
        body = (await http.request(source.name, "GET", url, params=params)).json()
        present = [f"{kind[:-1]}/{r['id']}" for r in body.get(kind, [])]
        return walk.listed(present, walk.page_after(_pages(body)))


def _pages(body: dict[str, Any]) -> int:
    return int(((body.get("meta") or {}).get("pagination") or {}).get("pages") or 1)
