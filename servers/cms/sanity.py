"""Sanity HTTP query API: GROQ over ``/v<api>/data/query/<dataset>``.

Auth: a read token as ``Authorization: Bearer`` (credential ``token``, ``${ENV}``; optional for a
public dataset). ``base_url`` is the project's API host (``https://<projectId>.api.sanity.io``);
options ``dataset`` (required), ``api_version`` (default ``2021-10-21``), ``types`` (document
types to sync; default every non-system, non-draft document). Parameters go as ``$name=<JSON>``.

Incremental: keyset pages over ``(_updatedAt, _id)`` —
``*[filter && (_updatedAt > $since || (_updatedAt == $since && _id > $after))] | order(_updatedAt asc, _id asc)[0...$n]``
— so a page boundary inside one timestamp loses nothing. Deletions: a query sees only the documents
that exist, so each sync ends with a sweep of the ids that still do (keyset over ``_id``); items
synced before and missing from it are deleted (drafts never count).

Cursor: ``{"since", "after"}`` at rest; during a sync also ``phase`` and, in the sweep, ``id``.
"""

from __future__ import annotations

import html
import json
from typing import Any

from vsm_mcp.connectors.base import Change, Page, Source
from vsm_mcp.connectors.http import GuardedHttp
from vsm_mcp.errors import InvalidArguments

BASE_FILTER = '!(_id in path("drafts.**")) && !(_type match "system.*")'


def _filter(types: list[str]) -> str:
    return BASE_FILTER + (" && _type in $types" if types else "")


def _text(value: Any) -> list[str]:
    """Strings and Portable Text spans of a field."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _text(v)]
    if isinstance(value, dict):
        if value.get("_type") == "span":
            return [str(value.get("text", ""))]
        return [s for k, v in value.items() if not k.startswith("_") for s in _text(v)]
    return []


class Sanity:
    type = "sanity"

    def validate(self, base_url: str, credentials: dict[str, str], options: dict[str, Any]) -> None:
        if not options.get("dataset"):
            raise InvalidArguments("sanity needs options.dataset (e.g. \"production\")")

    async def page(self, http: GuardedHttp, source: Source, cursor: dict[str, Any] | None) -> Page:
        o = source.options
        url = f"{source.base_url}/v{o.get('api_version', '2021-10-21')}/data/query/{o['dataset']}"
        headers = {"authorization": f"Bearer {source.credentials['token']}"} if source.credentials.get("token") else {}
        types: list[str] = list(o.get("types") or [])
        cur = dict(cursor or {})
        if "phase" not in cur:
            cur = {"since": cur.get("since") or "", "after": cur.get("after") or "", "phase": "changes", "id": ""}
        params: dict[str, Any] = {"$n": json.dumps(min(source.page_size, 1000))}
        if types:
            params["$types"] = json.dumps(types)
        if cur["phase"] == "changes":
            query = (f"*[{_filter(types)} && (_updatedAt > $since || (_updatedAt == $since && _id > $after))]"
                     " | order(_updatedAt asc, _id asc)[0...$n]")
            params |= {"query": query, "$since": json.dumps(cur["since"]), "$after": json.dumps(cur["after"])}
            rows = (await http.request(source.name, "GET", url, params=params, headers=headers)).json().get("result") or []
            changes = []
            for d in rows:
                title = str(d.get("title") or d.get("name") or d["_id"])
                body = [s for k, v in d.items() if not k.startswith("_") and k not in ("title", "name") for s in _text(v)]
                changes.append(Change(
                    external_id=str(d["_id"]), title=title, content_type="text/html", modified=str(d.get("_updatedAt", "")),
                    text=f"<html><body><h1>{html.escape(title)}</h1>{''.join(f'<p>{html.escape(s)}</p>' for s in body)}</body></html>",
                    meta={"type": d.get("_type", ""), "rev": d.get("_rev", "")}))
            if rows:
                cur["since"], cur["after"] = str(rows[-1].get("_updatedAt", "")), str(rows[-1]["_id"])
            if len(rows) < min(source.page_size, 1000):
                cur["phase"] = "ids"
            return Page(changes, cur, done=False)
        query = f"*[{_filter(types)} && _id > $id] | order(_id asc)[0...$n]._id"
        params |= {"query": query, "$id": json.dumps(cur["id"])}
        ids = [str(i) for i in (await http.request(source.name, "GET", url, params=params, headers=headers)).json().get("result") or []]
        if len(ids) < min(source.page_size, 1000):
            return Page([], {"since": cur["since"], "after": cur["after"]}, done=True, present=ids, sweep_end=True)
        cur["id"] = ids[-1]
        return Page([], cur, done=False, present=ids)
