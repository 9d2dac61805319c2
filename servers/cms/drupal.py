"""Drupal JSON:API (core ``jsonapi`` module): ``/jsonapi/<entity>/<bundle>`` per configured resource.

Auth: an OAuth bearer token (credential ``token``) or HTTP Basic (``username`` / ``password``),
``${ENV}`` references either way. Options: ``resources`` — e.g. ``["node/article", "node/page"]``.
Incremental: ``filter[changed]`` as a condition (``path=changed``, ``operator=>``, ``value`` = the
watermark as a Unix timestamp, less one second), ``sort=changed``, ``page[limit]``; further pages by
following ``links.next.href`` (only on the configured origin). Deletions: no feed, so each sync ends
with a sweep of the ids still listed (a sparse fieldset, ``fields[<type>]=drupal_internal__nid``).

Cursor: ``{"since"}`` at rest (ISO ``changed`` of the newest item); during a sync ``phase``,
``kind`` (index into resources), ``next`` (the ``links.next`` URL) and ``max``.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from servers.cms.walk import Walk
from vsm_mcp.connectors.base import Change, Page, Source
from vsm_mcp.connectors.http import ConnectorError, GuardedHttp
from vsm_mcp.errors import InvalidArguments


def _unix(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()) - 1


class Drupal:
    type = "drupal"

    def validate(self, base_url: str, credentials: dict[str, str], options: dict[str, Any]) -> None:
        res = options.get("resources")
        if not isinstance(res, list) or not res or not all(isinstance(r, str) and r.count("/") == 1 for r in res):
            raise InvalidArguments("drupal needs options.resources, e.g. [\"node/article\", \"node/page\"]")

    async def page(self, http: GuardedHttp, source: Source, cursor: dict[str, Any] | None) -> Page:
        resources: list[str] = list(source.options["resources"])
        walk = Walk(cursor, len(resources), next=None)
        res = resources[walk.kind]
        creds = source.credentials
        headers = {"accept": "application/vnd.api+json"}
        auth = None
        if creds.get("token"):
            headers["authorization"] = f"Bearer {creds['token']}"
        elif creds.get("username"):
            auth = (creds["username"], creds.get("password", ""))
        if walk.cur["next"]:
            if urlsplit(walk.cur["next"]).netloc != urlsplit(source.base_url).netloc:
                raise ConnectorError(f"connector {source.name!r}: links.next leaves {source.base_url}")
            url, params = walk.cur["next"], None
        else:
            url = f"{source.base_url}/jsonapi/{res}"
            params = {"sort": "changed", "page[limit]": min(source.page_size, 50)}
            if walk.phase == "changes" and walk.cur.get("since"):
                params |= {"filter[changed][condition][path]": "changed", "filter[changed][condition][operator]": ">",
                           "filter[changed][condition][value]": _unix(walk.cur["since"])}
            if walk.phase == "ids":
                params[f"fields[{res.replace('/', '--')}]"] = "drupal_internal__nid"
        body = (await http.request(source.name, "GET", url, params=params, headers=headers, auth=auth)).json()
        rows = body.get("data") or []
        nxt = ((body.get("links") or {}).get("next") or {}).get("href")
        then = {"next": nxt} if nxt else None
        if walk.phase == "changes":
            changes = []
            for r in rows:
                a = r.get("attributes") or {}
                title = str(a.get("title", ""))
                text = str((a.get("body") or {}).get("processed") or (a.get("body") or {}).get("value") or "")
                changes.append(Change(
                    external_id=f"{res}/{r['id']}", title=title, content_type="text/html",
                    text=f"<html><body><h1>{html.escape(title)}</h1>{text}</body></html>",
                    url=str(((r.get("links") or {}).get("self") or {}).get("href", "")), modified=str(a.get("changed", "")),
                    meta={"type": r.get("type", "")}))
            return walk.changed(changes, then)
        return walk.listed([f"{res}/{r['id']}" for r in rows], then)
