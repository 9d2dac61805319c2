"""Google Drive API v3: the Changes API for incremental sync, export for Google Docs.

Auth: an OAuth access token the user supplies (credential ``token``, a ``${ENV}`` reference)
sent as ``Authorization: Bearer``; when it expires Drive answers 401 and the sync stops with
the cursor unchanged until a fresh token is in the variable.

A first (or full) sync follows Google's recipe: ``changes.getStartPageToken`` *first*, then
``files.list`` (``trashed = false``) page by page, then the changes from that start token —
so nothing edited during the listing is lost. An incremental sync is ``changes.list`` with
``pageToken``, page by page (``nextPageToken``), until a page carries ``newStartPageToken``:
the cursor for next time. Each saved cursor is the page token of the next page, so a sync
killed between pages resumes from it. ``removed: true`` and ``file.trashed`` delete the
container. Bodies: Google Docs exported as ``text/plain`` (``files.export``), Sheets as CSV,
Slides as text; other files downloaded (``alt=media``); folders and shortcuts skipped.
Drive's own rate limits (429, and 403 ``rateLimitExceeded``) are retried with backoff.

Cursor: ``{"token"}`` at rest (a start page token); during a first sync ``{"phase": "list",
"start", "page"}``; during an incremental one ``{"token": <nextPageToken>}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from vsm_mcp.connectors.base import Change, Page, Source
from vsm_mcp.connectors.http import GuardedHttp

EXPORT = {
    "application/vnd.google-apps.document": "text/plain",
    "application/vnd.google-apps.spreadsheet": "text/csv",
    "application/vnd.google-apps.presentation": "text/plain",
}
SKIP_PREFIX = "application/vnd.google-apps."  # folders, shortcuts, forms, … (other than EXPORT)
FILE_FIELDS = "id,name,mimeType,trashed,modifiedTime,webViewLink"
DOWNLOADS_AT_ONCE = 8


class GoogleDrive:
    type = "gdrive"

    def validate(self, base_url: str, credentials: dict[str, str], options: dict[str, Any]) -> None:
        from vsm_mcp.errors import InvalidArguments

        if not credentials.get("token"):
            raise InvalidArguments("gdrive needs credentials.token (an OAuth access token as ${ENV})")

    async def page(self, http: GuardedHttp, source: Source, cursor: dict[str, Any] | None) -> Page:
        cur = dict(cursor or {})
        api = f"{source.base_url}/drive/v3"
        headers = {"authorization": f"Bearer {source.credentials['token']}"}
        size = min(source.page_size, 1000)
        if not cur:  # first or full sync: the start token before the listing
            resp = await http.request(source.name, "GET", f"{api}/changes/startPageToken", headers=headers)
            return Page([], {"phase": "list", "start": str(resp.json()["startPageToken"]), "page": None}, done=False)
        if cur.get("phase") == "list":
            params: dict[str, Any] = {"pageSize": size, "q": "trashed = false",
                                      "fields": f"nextPageToken,files({FILE_FIELDS})"}
            if cur.get("page"):
                params["pageToken"] = cur["page"]
            body = (await http.request(source.name, "GET", f"{api}/files", params=params, headers=headers)).json()
            files = body.get("files", [])
            changes = await self._bodies(http, source, api, headers, files)
            present = [str(f["id"]) for f in files]
            if body.get("nextPageToken"):
                return Page(changes, {**cur, "page": body["nextPageToken"]}, done=False, present=present)
            # listing complete: deletions found by the sweep, then the changes since the start token
            return Page(changes, {"token": cur["start"]}, done=False, present=present, sweep_end=True)
        params = {"pageToken": cur["token"], "pageSize": size, "includeRemoved": "true",
                  "fields": f"nextPageToken,newStartPageToken,changes(changeType,removed,fileId,file({FILE_FIELDS}))"}
        body = (await http.request(source.name, "GET", f"{api}/changes", params=params, headers=headers)).json()
        gone: list[Change] = []
        files = []
        for ch in body.get("changes", []):
            if ch.get("changeType", "file") != "file":
                continue
            f = ch.get("file") or {}
            if ch.get("removed") or f.get("trashed"):
                gone.append(Change(external_id=str(ch["fileId"]), deleted=True))
            else:
                files.append(f)
        latest = {str(f["id"]): f for f in files}  # a file changed twice in one page: its latest state
        changes = gone + await self._bodies(http, source, api, headers, list(latest.values()))
        if body.get("newStartPageToken"):
            return Page(changes, {"token": body["newStartPageToken"]}, done=True)
        return Page(changes, {"token": body["nextPageToken"]}, done=False)

    async def _bodies(self, http: GuardedHttp, source: Source, api: str, headers: dict[str, str],
                      files: list[dict[str, Any]]) -> list[Change]:
        gate = asyncio.Semaphore(DOWNLOADS_AT_ONCE)

        async def one(f: dict[str, Any]) -> Change | None:
            mime = str(f.get("mimeType", ""))
            if mime.startswith(SKIP_PREFIX) and mime not in EXPORT:
                return None
            fid = str(f["id"])
            async with gate:
                if mime in EXPORT:
                    resp = await http.request(source.name, "GET", f"{api}/files/{fid}/export",
                                              params={"mimeType": EXPORT[mime]}, headers=headers)
                    ctype = EXPORT[mime]
                else:
                    resp = await http.request(source.name, "GET", f"{api}/files/{fid}", params={"alt": "media"},
                                              headers=headers)
                    ctype = mime or resp.headers.get("content-type", "")
            return Change(external_id=fid, title=str(f.get("name", "")), text=resp.body.decode("utf-8", "replace"),
                          content_type=ctype, url=str(f.get("webViewLink", "")), modified=str(f.get("modifiedTime", "")),
                          meta={"mime_type": mime})

        return [c for c in await asyncio.gather(*(one(f) for f in files)) if c is not None]
