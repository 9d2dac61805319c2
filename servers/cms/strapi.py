"""Strapi REST API (v4 and v5): ``/api/<collection>`` for each configured collection.

Auth: an API token as ``Authorization: Bearer`` (credential ``token``, a ``${ENV}`` reference).
Options: ``collections`` — the plural API ids to sync (``["articles", "pages"]``).
Incremental: ``filters[updatedAt][$gt]=<since>`` (less one second, as for WordPress),
``sort=updatedAt:asc``, ``pagination[page]`` / ``pagination[pageSize]`` until
``meta.pagination.pageCount``. v4 wraps fields in ``attributes``; v5 returns them flat and adds
``documentId`` (used as the item id when present). Deletions: no feed, so each sync ends with a
sweep of the ids still listed (``fields[0]=id``), like WordPress.

Cursor: ``{"since"}`` at rest; during a sync ``phase``, ``kind`` (index into collections),
``page`` and ``max``.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from typing import Any

from servers.cms.walk import Walk
from vsm_mcp.connectors.base import Change, Page, Source
from vsm_mcp.connectors.http import GuardedHttp
from vsm_mcp.errors import InvalidArguments

TEXT_FIELDS = ("title", "name", "description", "summary", "body", "content")


def _minus_second(stamp: str) -> str:
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) - timedelta(seconds=1)
    except ValueError:
        return stamp
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z") if moment.tzinfo else moment.isoformat()


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    return dict(row.get("attributes") or row)  # v4: {id, attributes: {...}}; v5: flat


def _ident(row: dict[str, Any]) -> str:
    return str(row.get("documentId") or row["id"])


class Strapi:
    type = "strapi"

    def validate(self, base_url: str, credentials: dict[str, str], options: dict[str, Any]) -> None:
        cols = options.get("collections")
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols):
            raise InvalidArguments("strapi needs options.collections: the plural API ids to sync, e.g. [\"articles\"]")

    async def page(self, http: GuardedHttp, source: Source, cursor: dict[str, Any] | None) -> Page:
        cols: list[str] = list(source.options["collections"])
        walk = Walk(cursor, len(cols), page=1)
        col = cols[walk.kind]
        url = f"{source.base_url}/api/{col}"
        headers = {"authorization": f"Bearer {source.credentials['token']}"} if source.credentials.get("token") else {}
        if walk.phase == "changes":
            params: dict[str, Any] = {"pagination[page]": walk.cur["page"],
                                      "pagination[pageSize]": min(source.page_size, 100), "sort": "updatedAt:asc"}
            if walk.cur.get("since"):
                params["filters[updatedAt][$gt]"] = _minus_second(walk.cur["since"])
            body = (await http.request(source.name, "GET", url, params=params, headers=headers)).json()
            changes = []
            for row in body.get("data") or []:
                f = _fields(row)
                title = str(f.get("title") or f.get("name") or "")
                parts = [str(f[k]) for k in TEXT_FIELDS if isinstance(f.get(k), str) and k not in ("title", "name")]
                changes.append(Change(
                    external_id=f"{col}/{_ident(row)}", title=title, content_type="text/html",
                    text=f"<html><body><h1>{html.escape(title)}</h1>{''.join(f'<p>{html.escape(p)}</p>' for p in parts)}</body></html>",
                    modified=str(f.get("updatedAt", "")), meta={"collection": col}))
            return walk.changed(changes, walk.page_after(_pages(body)))
        params = {"pagination[page]": walk.cur["page"], "pagination[pageSize]": 100, "fields[0]": "id"}
        body = (await http.request(source.name, "GET", url, params=params, headers=headers)).json()
        present = [f"{col}/{_ident(r)}" for r in body.get("data") or []]
        return walk.listed(present, walk.page_after(_pages(body)))


def _pages(body: dict[str, Any]) -> int:
    return int(((body.get("meta") or {}).get("pagination") or {}).get("pageCount") or 1)
