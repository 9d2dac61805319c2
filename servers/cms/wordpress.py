"""WordPress REST API (``/wp-json/wp/v2/posts`` and ``/pages``), application passwords.

Auth: an application password (WordPress 5.6+) sent as HTTP Basic ``username:password``
(credentials ``username`` and ``password``, both ``${ENV}`` references); without credentials
only public content is read.

Incremental: ``modified_after=<since>`` with ``orderby=modified&order=asc``, ``per_page`` and
``page`` until ``X-WP-TotalPages``; ``since`` is the newest ``modified`` seen (the site's local
time, the column ``modified_after`` compares with), less one second so an edit in the same
second as the watermark is not lost (re-reading an unchanged item makes no new version).

Deletions: WordPress has no deletion feed — a trashed post leaves the public listing (its
status becomes ``trash``), a deleted one is gone. So every sync ends with a sweep: the ids of
all published posts and pages (``_fields=id``, 100 per page) are listed, and the items synced
before that this listing no longer holds are deleted (``Page.present`` / ``sweep_end``).

Cursor: ``{"since"}`` at rest; during a sync also ``phase`` (``changes`` | ``ids``), ``kind``
(index into posts, pages), ``page`` and ``max`` (newest ``modified`` seen so far).
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from typing import Any

from servers.cms.walk import Walk
from vsm_mcp.connectors.base import Change, Page, Source
from vsm_mcp.connectors.http import GuardedHttp
from vsm_mcp.errors import InvalidArguments

KINDS = ("posts", "pages")
ID_PAGE = 100  # the most WordPress returns per page


def _minus_second(stamp: str) -> str:
    try:
        return (datetime.fromisoformat(stamp) - timedelta(seconds=1)).isoformat(timespec="seconds")
    except ValueError:
        return stamp


class WordPress:
    type = "wordpress"

    def validate(self, base_url: str, credentials: dict[str, str], options: dict[str, Any]) -> None:
        if bool(credentials.get("username")) != bool(credentials.get("password")):
            raise InvalidArguments("wordpress credentials need both 'username' and 'password' (an application password)")

    async def page(self, http: GuardedHttp, source: Source, cursor: dict[str, Any] | None) -> Page:
        walk = Walk(cursor, len(KINDS), page=1)
        auth = (source.credentials["username"], source.credentials["password"]) if source.credentials else None
        kind = KINDS[walk.kind]
        url = f"{source.base_url}/wp-json/wp/v2/{kind}"
        if walk.phase == "changes":
            params: dict[str, Any] = {"per_page": min(source.page_size, 100), "page": walk.cur["page"],
                                      "orderby": "modified", "order": "asc"}
            if walk.cur.get("since"):
                params["modified_after"] = _minus_second(walk.cur["since"])
            resp = await http.request(source.name, "GET", url, params=params, auth=auth)
            changes = [self._change(kind, r) for r in resp.json()]
            return walk.changed(changes, walk.page_after(int(resp.headers.get("x-wp-totalpages", "1") or 1)))
        params = {"per_page": ID_PAGE, "page": walk.cur["page"], "_fields": "id"}
        resp = await http.request(source.name, "GET", url, params=params, auth=auth)
        present = [f"{kind[:-1]}/{r['id']}" for r in resp.json()]
        return walk.listed(present, walk.page_after(int(resp.headers.get("x-wp-totalpages", "1") or 1)))

    @staticmethod
    def _change(kind: str, r: dict[str, Any]) -> Change:
        title = html.unescape(str((r.get("title") or {}).get("rendered", "")))
        body = str((r.get("content") or {}).get("rendered", ""))
        return Change(
            external_id=f"{kind[:-1]}/{r['id']}", title=title,
            text=f"<html><head><title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
            content_type="text/html", url=str(r.get("link", "")), modified=str(r.get("modified", "")),
            meta={"status": r.get("status", ""), "slug": r.get("slug", "")},
        )
