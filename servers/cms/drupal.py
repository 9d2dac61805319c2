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
        cur = dict(cursor or {})
        if "phase" not in cur:
            cur = {"since": cur.get("since"), "phase": "changes", "kind": 0, "next": None, "max": cur.get("since")}
        res = resources[cur["kind"]]
        creds = source.credentials
        headers = {"accept": "application/vnd.api+json"}
        auth = None
        if creds.get("token"):
            headers["authorization"] = f"Bearer {creds['token']}"
        elif creds.get("username"):
            auth = (creds["username"], creds.get("password", ""))
        if cur["next"]:
            if urlsplit(cur["next"]).netloc != urlsplit(source.base_url).netloc:
                raise ConnectorError(f"connector {source.name!r}: links.next leaves {source.base_url}")
            url, params = cur["next"], None
        else:
            url = f"{source.base_url}/jsonapi/{res}"
            params = {"sort": "changed", "page[limit]": min(source.page_size, 50)}
            if cur["phase"] == "changes" and cur.get("since"):
                params |= {"filter[changed][condition][path]": "changed", "filter[changed][condition][operator]": ">",
                           "filter[changed][condition][value]": _unix(cur["since"])}
            if cur["phase"] == "ids":
                params[f"fields[{res.replace('/', '--')}]"] = "drupal_internal__nid"
        body = (await http.request(source.name, "GET", url, params=params, headers=headers, auth=auth)).json()
        rows = body.get("data") or []
        nxt = ((body.get("links") or {}).get("next") or {}).get("href")
        if cur["phase"] == "changes":
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
            for c in changes:
                if c.modified and (cur["max"] is None or c.modified > cur["max"]):
                    cur["max"] = c.modified
            self._advance(cur, nxt, len(resources), "ids")
            return Page(changes, cur, done=False)
        present = [f"{res}/{r['id']}" for r in rows]
        self._advance(cur, nxt, len(resources), "end")
        if cur["phase"] == "end":
            return Page([], {"since": cur["max"]}, done=True, present=present, sweep_end=True)
        return Page([], cur, done=False, present=present)

    @staticmethod
    def _advance(cur: dict[str, Any], nxt: str | None, kinds: int, after: str) -> None:
        if nxt:
            cur["next"] = nxt
        elif cur["kind"] + 1 < kinds:
            cur["kind"], cur["next"] = cur["kind"] + 1, None
        else:
            cur["phase"], cur["kind"], cur["next"] = after, 0, None
