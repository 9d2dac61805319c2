"""Local CMS APIs for the connector tests, following each product's documented HTTP shapes.

* ``FakeWordPress`` — WP REST API v2: ``GET /wp-json/wp/v2/{posts,pages}`` with ``per_page``
  (≤ 100), ``page``, ``orderby=modified&order=asc``, ``modified_after`` (exclusive),
  ``_fields``; ``X-WP-Total`` / ``X-WP-TotalPages`` headers; a page past the end is 400
  ``rest_post_invalid_page_number``; trashed posts (``status: trash``) and deleted ones leave
  the listing; application passwords via HTTP Basic, a wrong one is 401 ``incorrect_password``.
* ``FakeContentful`` — the Sync API: ``GET /spaces/{space}/environments/{env}/sync`` with
  ``initial=true`` (+ ``limit``) or ``sync_token``; pages end in ``nextPageUrl`` or
  ``nextSyncToken``; deltas hold each changed entry's latest state or a ``DeletedEntry``;
  Bearer token, 401 ``AccessTokenInvalid``; 429 with ``X-Contentful-RateLimit-Reset``.

Both: ``storm(n)`` answers the next ``n`` requests 429 (with the product's wait header), and
``requests`` counts what was asked.
"""

from __future__ import annotations

import asyncio
import base64
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Doc:
    id: int
    kind: str  # post | page (WordPress); entry (Contentful)
    title: str
    body: str
    modified: str
    status: str = "publish"
    revision: int = 1


@dataclass
class FakeWordPress:
    server: str = "cms"
    user: str = "admin"
    password: str = "abcd efgh ijkl mnop qrst uvwx"
    docs: dict[int, Doc] = field(default_factory=dict)
    storm_left: int = 0
    requests: int = 0
    throttled: int = 0
    clock: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 9, 0, 0))

    def _tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return self.clock.isoformat(timespec="seconds")

    # --- the scenario's hands on the source ------------------------------------------------
    def seed(self, n: int) -> list[str]:
        out = []
        for i in range(1, n + 1):
            kind = "post" if i % 5 else "page"
            self.docs[i] = Doc(i, kind, f"{kind.title()} {i} about topic {i % 17}",
                               f"<p>Body of {kind} {i}. It discusses subject number {i} in some detail.</p>", self._tick())
            out.append(f"{kind}/{i}")
        return out

    def ids(self) -> list[str]:
        return [f"{d.kind}/{d.id}" for d in self.docs.values() if d.status == "publish"]

    def edit(self, ext_ids: list[str]) -> None:
        for e in ext_ids:
            d = self.docs[int(e.split("/")[1])]
            d.body += f"<p>Edited at {self.clock.isoformat()}.</p>"
            d.modified, d.revision = self._tick(), d.revision + 1

    def delete(self, ext_ids: list[str]) -> None:
        for n, e in enumerate(ext_ids):  # trash some, delete the others for good: both leave the listing
            i = int(e.split("/")[1])
            if n % 2 == 0:
                self.docs[i].status, self.docs[i].modified = "trash", self._tick()
            else:
                del self.docs[i]

    def expire(self) -> None:
        self.password = "revoked"

    def storm(self, n: int) -> None:
        self.storm_left = n

    def credentials_env(self) -> dict[str, str]:
        return {"WP_TEST_USER": self.user, "WP_TEST_APP_PASSWORD": self.password}

    def connector_args(self, base_url: str) -> dict[str, Any]:
        return {"type": "wordpress", "base_url": base_url,
                "credentials": {"username": "${WP_TEST_USER}", "password": "${WP_TEST_APP_PASSWORD}"}}

    # --- HTTP ------------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/wp-json/wp/v2/{kind}", self._list, methods=["GET"])])

    async def _list(self, request: Request) -> Response:
        self.requests += 1
        if self.storm_left > 0:
            self.storm_left -= 1
            self.throttled += 1
            return JSONResponse({"code": "rest_too_many_requests", "message": "Too many requests.",
                                 "data": {"status": 429}}, 429, headers={"retry-after": "0"})
        auth = request.headers.get("authorization", "")
        if auth:
            user, _, pw = base64.b64decode(auth.split(" ", 1)[1]).decode().partition(":")
            if user != self.user or pw != self.password:
                return JSONResponse({"code": "incorrect_password", "message": "The provided password is an invalid "
                                     "application password.", "data": {"status": 401}}, 401)
        kind = request.path_params["kind"]
        if kind not in ("posts", "pages"):
            return JSONResponse({"code": "rest_no_route", "message": "No route was found.", "data": {"status": 404}}, 404)
        q = request.query_params
        per_page, page = int(q.get("per_page", "10")), int(q.get("page", "1"))
        if not 1 <= per_page <= 100:
            return JSONResponse({"code": "rest_invalid_param", "message": "Invalid parameter(s): per_page",
                                 "data": {"status": 400}}, 400)
        rows = [d for d in self.docs.values() if d.kind == kind[:-1] and d.status == "publish"]
        if "modified_after" in q:
            rows = [d for d in rows if d.modified > q["modified_after"]]
        if q.get("orderby") == "modified":
            rows.sort(key=lambda d: (d.modified, d.id), reverse=q.get("order") != "asc")
        else:
            rows.sort(key=lambda d: d.id, reverse=True)  # WordPress's default: newest first
        total, pages = len(rows), math.ceil(len(rows) / per_page)
        if page > max(pages, 1):
            return JSONResponse({"code": "rest_post_invalid_page_number", "message": "The page number requested is "
                                 "larger than the number of pages available.", "data": {"status": 400}}, 400)
        chunk = rows[(page - 1) * per_page: page * per_page]
        fields = q.get("_fields")
        body = [self._json(d, request) for d in chunk]
        if fields:
            keep = set(fields.split(","))
            body = [{k: v for k, v in b.items() if k in keep} for b in body]
        return JSONResponse(body, headers={"x-wp-total": str(total), "x-wp-totalpages": str(pages)})

    @staticmethod
    def _json(d: Doc, request: Request) -> dict[str, Any]:
        return {"id": d.id, "date": d.modified, "modified": d.modified, "modified_gmt": d.modified, "slug": f"{d.kind}-{d.id}",
                "status": d.status, "type": d.kind, "link": f"{request.base_url}?p={d.id}",
                "title": {"rendered": d.title}, "content": {"rendered": d.body, "protected": False}}


@dataclass
class FakeContentful:
    server: str = "cms"
    space: str = "spc1"
    token: str = "cda-token-1"
    entries: dict[str, Doc] = field(default_factory=dict)
    log: list[tuple[int, str]] = field(default_factory=list)  # (sequence, entry id) per change
    storm_left: int = 0
    requests: int = 0
    throttled: int = 0
    delta_page: int = 100
    seq: int = 0

    def _mark(self, ident: str) -> None:
        self.seq += 1
        self.log.append((self.seq, ident))

    def seed(self, n: int) -> list[str]:
        for i in range(1, n + 1):
            ident = f"e{i:05d}"
            self.entries[ident] = Doc(i, "entry", f"Entry {i} about topic {i % 17}",
                                      f"Entry {i} discusses subject number {i} in some detail.",
                                      f"2026-12-01T09:{i // 60 % 60:02d}:{i % 60:02d}Z")
            self._mark(ident)
        return [f"entry/{k}" for k in self.entries]

    def ids(self) -> list[str]:
        return [f"entry/{k}" for k, d in self.entries.items() if d.status == "publish"]

    def edit(self, ext_ids: list[str]) -> None:
        for e in ext_ids:
            d = self.entries[e.split("/")[1]]
            d.body += f" Edited, revision {d.revision + 1}."
            d.revision += 1
            self._mark(e.split("/")[1])

    def delete(self, ext_ids: list[str]) -> None:
        for e in ext_ids:
            self.entries[e.split("/")[1]].status = "deleted"
            self._mark(e.split("/")[1])

    def expire(self) -> None:
        self.token = "rotated"

    def storm(self, n: int) -> None:
        self.storm_left = n

    def credentials_env(self) -> dict[str, str]:
        return {"CONTENTFUL_TEST_TOKEN": self.token}

    def connector_args(self, base_url: str) -> dict[str, Any]:
        return {"type": "contentful", "base_url": base_url, "credentials": {"token": "${CONTENTFUL_TEST_TOKEN}"},
                "options": {"space": self.space, "environment": "master"}}

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/spaces/{space}/environments/{env}/sync", self._sync, methods=["GET"])])

    def _entry(self, ident: str) -> dict[str, Any]:
        d = self.entries[ident]
        sys = {"id": ident, "revision": d.revision, "updatedAt": d.modified, "createdAt": d.modified}
        if d.status == "deleted":
            return {"sys": {**sys, "type": "DeletedEntry", "deletedAt": d.modified}}
        return {"sys": {**sys, "type": "Entry", "contentType": {"sys": {"type": "Link", "linkType": "ContentType", "id": "article"}}},
                "fields": {"title": {"en-US": d.title}, "body": {"en-US": {"nodeType": "document", "content": [
                    {"nodeType": "paragraph", "content": [{"nodeType": "text", "value": d.body}]}]}}}}

    async def _sync(self, request: Request) -> Response:
        self.requests += 1
        if self.storm_left > 0:
            self.storm_left -= 1
            self.throttled += 1
            return JSONResponse({"sys": {"type": "Error", "id": "RateLimitExceeded"}, "message": "You have exceeded "
                                 "the rate limit."}, 429, headers={"x-contentful-ratelimit-reset": "0"})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"sys": {"type": "Error", "id": "AccessTokenInvalid"}, "message": "The access token "
                                 "you sent could not be found or is invalid."}, 401)
        if request.path_params["space"] != self.space:
            return JSONResponse({"sys": {"type": "Error", "id": "NotFound"}, "message": "not found"}, 404)
        q = request.query_params
        base = str(request.url).split("?", 1)[0]
        if q.get("initial") == "true":
            return self._initial(base, self.seq, 0, int(q.get("limit", "100")))
        token = q.get("sync_token", "")
        kind, _, rest = token.partition("-")
        parts = [int(x) for x in rest.split("-")] if rest else []
        if kind == "init" and len(parts) == 3:
            return self._initial(base, *parts)
        if kind == "tok" and len(parts) == 1:
            return self._delta(base, parts[0], self.seq, 0)
        if kind == "delta" and len(parts) == 3:
            return self._delta(base, *parts)
        return JSONResponse({"sys": {"type": "Error", "id": "BadRequest"}, "message": "invalid sync_token"}, 400)

    def _initial(self, base: str, at: int, offset: int, limit: int) -> Response:
        ids = sorted(k for k, d in self.entries.items() if d.status == "publish")  # a snapshot is approximated by now
        chunk = ids[offset: offset + limit]
        body: dict[str, Any] = {"sys": {"type": "Array"}, "items": [self._entry(k) for k in chunk]}
        if offset + limit < len(ids):
            body["nextPageUrl"] = f"{base}?sync_token=init-{at}-{offset + limit}-{limit}"
        else:
            body["nextSyncToken"] = f"tok-{at}"
        return JSONResponse(body)

    def _delta(self, base: str, after: int, upto: int, offset: int) -> Response:
        changed = list(dict.fromkeys(i for s, i in self.log if after < s <= upto))
        chunk = changed[offset: offset + self.delta_page]
        body: dict[str, Any] = {"sys": {"type": "Array"}, "items": [self._entry(k) for k in chunk]}
        if offset + self.delta_page < len(changed):
            body["nextPageUrl"] = f"{base}?sync_token=delta-{after}-{upto}-{offset + self.delta_page}"
        else:
            body["nextSyncToken"] = f"tok-{upto}"
        return JSONResponse(body)


@dataclass
class DriveFile:
    id: str
    name: str
    mime: str
    body: str
    modified: str
    trashed: bool = False


@dataclass
class FakeDrive:
    """Google Drive API v3: ``changes/startPageToken``, ``changes`` (``pageToken``, ``pageSize``,
    ``includeRemoved``; ``nextPageToken`` or ``newStartPageToken``; one change per file, its latest
    state; ``removed`` for deleted files, ``file.trashed`` for trashed ones), ``files`` (``q =
    "trashed = false"``, ``pageToken``), ``files/{id}/export?mimeType=`` (Google Docs only) and
    ``files/{id}?alt=media`` (binary files only); Bearer token, 401 ``UNAUTHENTICATED``; rate
    limits as 429 and 403 ``userRateLimitExceeded`` (no Retry-After, as Drive does)."""

    token: str = "ya29.test-token"
    server: str = "drive"
    files: dict[str, DriveFile] = field(default_factory=dict)
    log: list[tuple[int, str]] = field(default_factory=list)
    seq: int = 0
    storm_left: int = 0
    requests: int = 0
    throttled: int = 0
    change_pages: list[str] = field(default_factory=list)  # pageToken of every changes.list served
    delay_s: float = 0.0  # before answering changes.list (a slow API, so a test can act between pages)

    def _mark(self, fid: str) -> None:
        self.seq += 1
        self.log.append((self.seq, fid))

    def seed(self, n: int) -> list[str]:
        out = []
        for i in range(1, n + 1):
            fid = f"f{i:05d}"
            doc = i % 5 != 0
            self.files[fid] = DriveFile(fid, f"File {i} about topic {i % 17}",
                                        "application/vnd.google-apps.document" if doc else "text/plain",
                                        f"File {i} discusses subject number {i} in some detail.", f"2026-12-01T09:00:{i % 60:02d}.000Z")
            self._mark(fid)
            out.append(fid)
        return out

    def ids(self) -> list[str]:
        return [f for f, d in self.files.items() if not d.trashed]

    def edit(self, ids: list[str]) -> None:
        for fid in ids:
            self.files[fid].body += f" Edited at change {self.seq + 1}."
            self._mark(fid)

    def delete(self, ids: list[str]) -> None:
        for n, fid in enumerate(ids):
            if n % 2 == 0:
                self.files[fid].trashed = True
            else:
                del self.files[fid]
            self._mark(fid)

    def expire(self) -> None:
        self.token = "ya29.expired"

    def storm(self, n: int) -> None:
        self.storm_left = n

    def credentials_env(self) -> dict[str, str]:
        return {"GDRIVE_TEST_TOKEN": self.token}

    def connector_args(self, base_url: str) -> dict[str, Any]:
        return {"type": "gdrive", "base_url": base_url, "credentials": {"token": "${GDRIVE_TEST_TOKEN}"}}

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/drive/v3/changes/startPageToken", self._start, methods=["GET"]),
            Route("/drive/v3/changes", self._changes, methods=["GET"]),
            Route("/drive/v3/files", self._list, methods=["GET"]),
            Route("/drive/v3/files/{fid}/export", self._export, methods=["GET"]),
            Route("/drive/v3/files/{fid}", self._get, methods=["GET"]),
        ])

    @staticmethod
    def _error(code: int, reason: str, message: str, status: str = "") -> JSONResponse:
        return JSONResponse({"error": {"code": code, "message": message, "status": status,
                                       "errors": [{"domain": "usageLimits" if "Limit" in reason else "global",
                                                   "reason": reason, "message": message}]}}, code)

    def _gate(self, request: Request) -> JSONResponse | None:
        self.requests += 1
        if self.storm_left > 0:
            self.storm_left -= 1
            self.throttled += 1
            if self.storm_left % 2:
                return self._error(403, "userRateLimitExceeded", "User Rate Limit Exceeded")
            return self._error(429, "rateLimitExceeded", "Rate Limit Exceeded", "RESOURCE_EXHAUSTED")
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._error(401, "authError", "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        return None

    def _file(self, d: DriveFile) -> dict[str, Any]:
        return {"kind": "drive#file", "id": d.id, "name": d.name, "mimeType": d.mime, "trashed": d.trashed,
                "modifiedTime": d.modified, "webViewLink": f"https://docs.google.com/document/d/{d.id}/edit"}

    async def _start(self, request: Request) -> Response:
        return self._gate(request) or JSONResponse({"kind": "drive#startPageToken", "startPageToken": str(self.seq + 1)})

    async def _changes(self, request: Request) -> Response:
        if (err := self._gate(request)) is not None:
            return err
        q = request.query_params
        token, size = int(q["pageToken"]), min(int(q.get("pageSize", "100")), 1000)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.change_pages.append(q["pageToken"])
        last = {fid: s for s, fid in self.log}
        entries = [(s, fid) for s, fid in self.log if s >= token and last[fid] == s]
        chunk = entries[:size]
        out = []
        for _s, fid in chunk:
            d = self.files.get(fid)
            ch: dict[str, Any] = {"kind": "drive#change", "changeType": "file", "fileId": fid, "removed": d is None,
                                  "time": "2026-12-07T07:00:00.000Z"}
            if d is not None:
                ch["file"] = self._file(d)
            out.append(ch)
        body: dict[str, Any] = {"kind": "drive#changeList", "changes": out}
        if len(entries) > size:
            body["nextPageToken"] = str(entries[size][0])
        else:
            body["newStartPageToken"] = str(self.seq + 1)
        return JSONResponse(body)

    async def _list(self, request: Request) -> Response:
        if (err := self._gate(request)) is not None:
            return err
        q = request.query_params
        size, offset = min(int(q.get("pageSize", "100")), 1000), int(q.get("pageToken", "0") or 0)
        rows = sorted((d for d in self.files.values() if not (q.get("q") == "trashed = false" and d.trashed)),
                      key=lambda d: d.id)
        body: dict[str, Any] = {"kind": "drive#fileList", "files": [self._file(d) for d in rows[offset: offset + size]]}
        if offset + size < len(rows):
            body["nextPageToken"] = str(offset + size)
        return JSONResponse(body)

    async def _export(self, request: Request) -> Response:
        if (err := self._gate(request)) is not None:
            return err
        d = self.files.get(request.path_params["fid"])
        if d is None:
            return self._error(404, "notFound", "File not found.")
        if not d.mime.startswith("application/vnd.google-apps."):
            return self._error(400, "fileNotExportable", "Export only supports Docs Editors files.")
        return Response(f"\ufeff{d.name}\r\n\r\n{d.body}".encode(), media_type="text/plain; charset=utf-8")

    async def _get(self, request: Request) -> Response:
        if (err := self._gate(request)) is not None:
            return err
        d = self.files.get(request.path_params["fid"])
        if d is None:
            return self._error(404, "notFound", "File not found.")
        if request.query_params.get("alt") != "media":
            return JSONResponse(self._file(d))
        if d.mime.startswith("application/vnd.google-apps."):
            return self._error(403, "fileNotDownloadable", "Only files with binary content can be downloaded.")
        return Response(d.body.encode(), media_type=d.mime)


@dataclass
class FakeGhost:
    """Ghost Content API: ``GET /ghost/api/content/{posts,pages}/`` with ``key``, ``limit`` (≤ 100
    here), ``page``, ``order=updated_at asc``, ``filter=updated_at:>'YYYY-MM-DD HH:MM:SS'``,
    ``fields``, ``formats=html``; ``{"posts": [...], "meta": {"pagination": {page, limit, pages,
    total, next, prev}}}``; an unknown key is 401 ``UnauthorizedError``; 429 with Retry-After.
    Unpublished and deleted posts leave the listing (no deletion feed)."""

    server: str = "cms"
    key: str = "22444f78447824223cefc48062"
    docs: dict[str, Doc] = field(default_factory=dict)
    storm_left: int = 0
    requests: int = 0
    throttled: int = 0
    clock: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 9, 0, 0))

    def _tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")

    def seed(self, n: int) -> list[str]:
        out = []
        for i in range(1, n + 1):
            kind = "post" if i % 5 else "page"
            gid = f"{i:024x}"
            self.docs[gid] = Doc(i, kind, f"{kind.title()} {i} about topic {i % 17}",
                                 f"<p>Body of {kind} {i}. It discusses subject number {i} in some detail.</p>", self._tick())
            out.append(f"{kind}/{gid}")
        return out

    def edit(self, ext_ids: list[str]) -> None:
        for e in ext_ids:
            d = self.docs[e.split("/")[1]]
            d.body += "<p>Edited.</p>"
            d.modified = self._tick()

    def delete(self, ext_ids: list[str]) -> None:
        for n, e in enumerate(ext_ids):
            gid = e.split("/")[1]
            if n % 2 == 0:
                self.docs[gid].status, self.docs[gid].modified = "draft", self._tick()  # unpublished
            else:
                del self.docs[gid]

    def expire(self) -> None:
        self.key = "0000000000000000000000000a"

    def storm(self, n: int) -> None:
        self.storm_left = n

    def credentials_env(self) -> dict[str, str]:
        return {"GHOST_TEST_CONTENT_KEY": self.key}

    def connector_args(self, base_url: str) -> dict[str, Any]:
        return {"type": "ghost", "base_url": base_url, "credentials": {"key": "${GHOST_TEST_CONTENT_KEY}"}}

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/ghost/api/content/{kind}/", self._list, methods=["GET"])])

    async def _list(self, request: Request) -> Response:
        self.requests += 1
        if self.storm_left > 0:
            self.storm_left -= 1
            self.throttled += 1
            return JSONResponse({"errors": [{"message": "Too many requests", "type": "TooManyRequestsError"}]}, 429,
                                headers={"retry-after": "0"})
        q = request.query_params
        if q.get("key") != self.key:
            return JSONResponse({"errors": [{"message": "Unknown Content API Key", "type": "UnauthorizedError"}]}, 401)
        kind = request.path_params["kind"]
        rows = [(gid, d) for gid, d in self.docs.items() if d.kind == kind[:-1] and d.status == "publish"]
        flt = q.get("filter", "")
        if flt:
            assert flt.startswith("updated_at:>'") and flt.endswith("'"), flt
            since = datetime.strptime(flt[len("updated_at:>'"):-1], "%Y-%m-%d %H:%M:%S")
            rows = [(g, d) for g, d in rows if datetime.fromisoformat(d.modified).replace(tzinfo=None) > since]
        if q.get("order") == "updated_at asc":
            rows.sort(key=lambda r: r[1].modified)
        limit, page = min(int(q.get("limit", "15")), 100), int(q.get("page", "1"))
        pages = max(1, math.ceil(len(rows) / limit))
        chunk = rows[(page - 1) * limit: page * limit]
        items = [{"id": g, "uuid": g, "title": d.title, "slug": f"{d.kind}-{d.id}", "html": d.body,
                  "updated_at": d.modified, "url": f"{request.base_url}{d.kind}-{d.id}/"} for g, d in chunk]
        if q.get("fields"):
            keep = set(q["fields"].split(","))
            items = [{k: v for k, v in it.items() if k in keep} for it in items]
        return JSONResponse({kind: items, "meta": {"pagination": {
            "page": page, "limit": limit, "pages": pages, "total": len(rows),
            "next": page + 1 if page < pages else None, "prev": page - 1 if page > 1 else None}}})


@dataclass
class FakeStrapi:
    """Strapi 5 REST API: ``GET /api/{collection}`` with ``pagination[page]`` / ``pagination[pageSize]``
    (≤ 100 here), ``sort=updatedAt:asc``, ``filters[updatedAt][$gt]``, ``fields[0]``; ``{"data": [...],
    "meta": {"pagination": {page, pageSize, pageCount, total}}}``; API token as Bearer, a bad one
    is 401 ``UnauthorizedError``; 429 with Retry-After. Deleted or unpublished entries leave the
    listing (no deletion feed)."""

    server: str = "cms"
    token: str = "strapi-api-token-1"
    docs: dict[str, Doc] = field(default_factory=dict)
    storm_left: int = 0
    requests: int = 0
    throttled: int = 0
    clock: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 9, 0, 0))

    def _tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def seed(self, n: int) -> list[str]:
        out = []
        for i in range(1, n + 1):
            col = "articles" if i % 5 else "pages"
            did = f"d{i:023d}"
            self.docs[did] = Doc(i, col, f"{col.title()} {i} about topic {i % 17}",
                                 f"It discusses subject number {i} in some detail.", self._tick())
            out.append(f"{col}/{did}")
        return out

    def edit(self, ext_ids: list[str]) -> None:
        for e in ext_ids:
            d = self.docs[e.split("/")[1]]
            d.body += " Edited."
            d.modified = self._tick()

    def delete(self, ext_ids: list[str]) -> None:
        for n, e in enumerate(ext_ids):
            did = e.split("/")[1]
            if n % 2 == 0:
                self.docs[did].status = "draft"
            else:
                del self.docs[did]

    def expire(self) -> None:
        self.token = "revoked"

    def storm(self, n: int) -> None:
        self.storm_left = n

    def credentials_env(self) -> dict[str, str]:
        return {"STRAPI_TEST_TOKEN": self.token}

    def connector_args(self, base_url: str) -> dict[str, Any]:
        return {"type": "strapi", "base_url": base_url, "credentials": {"token": "${STRAPI_TEST_TOKEN}"},
                "options": {"collections": ["articles", "pages"]}}

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/{col}", self._list, methods=["GET"])])

    async def _list(self, request: Request) -> Response:
        self.requests += 1
        if self.storm_left > 0:
            self.storm_left -= 1
            self.throttled += 1
            return JSONResponse({"data": None, "error": {"status": 429, "name": "RateLimitError",
                                                         "message": "Too many requests, please try again later."}}, 429,
                                headers={"retry-after": "0"})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"data": None, "error": {"status": 401, "name": "UnauthorizedError",
                                                         "message": "Missing or invalid credentials"}}, 401)
        col, q = request.path_params["col"], request.query_params
        rows = [(k, d) for k, d in self.docs.items() if d.kind == col and d.status == "publish"]
        if "filters[updatedAt][$gt]" in q:
            rows = [(k, d) for k, d in rows if d.modified > q["filters[updatedAt][$gt]"]]
        if q.get("sort") == "updatedAt:asc":
            rows.sort(key=lambda r: r[1].modified)
        size, page = min(int(q.get("pagination[pageSize]", "25")), 100), int(q.get("pagination[page]", "1"))
        count = max(1, math.ceil(len(rows) / size))
        chunk = rows[(page - 1) * size: page * size]
        data = [{"id": d.id, "documentId": k, "title": d.title, "body": d.body, "updatedAt": d.modified,
                 "publishedAt": d.modified} for k, d in chunk]
        if q.get("fields[0]"):
            data = [{"id": x["id"], "documentId": x["documentId"], q["fields[0]"]: x.get(q["fields[0]"])} for x in data]
        return JSONResponse({"data": data, "meta": {"pagination": {"page": page, "pageSize": size,
                                                                   "pageCount": count, "total": len(rows)}}})


@dataclass
class FakeDrupal:
    """Drupal JSON:API: ``GET /jsonapi/node/{bundle}`` with ``filter[changed][condition][path|operator|value]``
    (value a Unix timestamp), ``sort=changed``, ``page[limit]`` (≤ 50) / ``page[offset]``, sparse
    ``fields[node--bundle]``; ``{"data": [{type, id, attributes: {title, body: {value, processed},
    changed, status}}], "links": {"next": {"href"}}}``; OAuth Bearer, a bad token is 401 with a
    JSON:API ``errors`` body; 429 with Retry-After. Unpublished or deleted nodes leave the listing."""

    server: str = "cms"
    token: str = "drupal-oauth-token-1"
    docs: dict[str, Doc] = field(default_factory=dict)
    storm_left: int = 0
    requests: int = 0
    throttled: int = 0
    clock: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 9, 0, 0))

    def _tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S+00:00")

    def seed(self, n: int) -> list[str]:
        out = []
        for i in range(1, n + 1):
            bundle = "article" if i % 5 else "page"
            uid = f"00000000-0000-4000-8000-{i:012d}"
            self.docs[uid] = Doc(i, bundle, f"{bundle.title()} {i} about topic {i % 17}",
                                 f"<p>It discusses subject number {i} in some detail.</p>", self._tick())
            out.append(f"node/{bundle}/{uid}")
        return out

    def edit(self, ext_ids: list[str]) -> None:
        for e in ext_ids:
            d = self.docs[e.split("/")[2]]
            d.body += "<p>Edited.</p>"
            d.modified = self._tick()

    def delete(self, ext_ids: list[str]) -> None:
        for n, e in enumerate(ext_ids):
            uid = e.split("/")[2]
            if n % 2 == 0:
                self.docs[uid].status = "unpublished"
            else:
                del self.docs[uid]

    def expire(self) -> None:
        self.token = "expired"

    def storm(self, n: int) -> None:
        self.storm_left = n

    def credentials_env(self) -> dict[str, str]:
        return {"DRUPAL_TEST_TOKEN": self.token}

    def connector_args(self, base_url: str) -> dict[str, Any]:
        return {"type": "drupal", "base_url": base_url, "credentials": {"token": "${DRUPAL_TEST_TOKEN}"},
                "options": {"resources": ["node/article", "node/page"]}}

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/jsonapi/node/{bundle}", self._list, methods=["GET"])])

    async def _list(self, request: Request) -> Response:
        self.requests += 1
        if self.storm_left > 0:
            self.storm_left -= 1
            self.throttled += 1
            return JSONResponse({"errors": [{"status": "429", "title": "Too Many Requests"}]}, 429,
                                headers={"retry-after": "0"})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"jsonapi": {"version": "1.0"}, "errors": [{"title": "Unauthorized", "status": "401",
                                 "detail": "The used authentication method is not allowed on this route."}]}, 401)
        bundle, q = request.path_params["bundle"], request.query_params
        rows = [(k, d) for k, d in self.docs.items() if d.kind == bundle and d.status == "publish"]
        if q.get("filter[changed][condition][path]") == "changed":
            assert q.get("filter[changed][condition][operator]") == ">"
            after = int(q["filter[changed][condition][value]"])
            rows = [(k, d) for k, d in rows if datetime.fromisoformat(d.modified).timestamp() > after]
        if q.get("sort") == "changed":
            rows.sort(key=lambda r: r[1].modified)
        limit, offset = min(int(q.get("page[limit]", "50")), 50), int(q.get("page[offset]", "0"))
        chunk = rows[offset: offset + limit]
        sparse = q.get(f"fields[node--{bundle}]")
        data = []
        for k, d in chunk:
            attrs: dict[str, Any] = {"drupal_internal__nid": d.id, "title": d.title, "status": True, "changed": d.modified,
                                     "body": {"value": d.body, "format": "basic_html", "processed": d.body}}
            if sparse:
                attrs = {f: attrs[f] for f in sparse.split(",") if f in attrs}
            data.append({"type": f"node--{bundle}", "id": k, "attributes": attrs,
                         "links": {"self": {"href": f"{request.base_url}jsonapi/node/{bundle}/{k}"}}})
        links: dict[str, Any] = {"self": {"href": str(request.url)}}
        if offset + limit < len(rows):
            params = dict(q)
            params["page[offset]"] = str(offset + limit)
            params["page[limit]"] = str(limit)
            from urllib.parse import urlencode
            links["next"] = {"href": f"{str(request.url).split('?', 1)[0]}?{urlencode(params)}"}
        return JSONResponse({"jsonapi": {"version": "1.0"}, "data": data, "links": links})


@dataclass
class FakeSanity:
    """Sanity's HTTP query API: ``GET /v{version}/data/query/{dataset}?query=<GROQ>&$param=<JSON>``
    → ``{"result": ..., "ms", "query"}``. Not a GROQ engine: it answers the two query shapes the
    connector sends (keyset over ``(_updatedAt, _id)``, and ``_id`` projection keyset), checks
    them verbatim, and refuses anything else with Sanity's 400 ``queryParseError``. Bearer token,
    401 ``Unauthorized``; 429 with Retry-After. Deleted documents are simply gone."""

    server: str = "cms"
    token: str = "sk-sanity-read-1"
    docs: dict[str, Doc] = field(default_factory=dict)
    storm_left: int = 0
    requests: int = 0
    throttled: int = 0
    clock: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 9, 0, 0))

    def _tick(self) -> str:
        self.clock += timedelta(milliseconds=500)  # two edits may share a second: keyset pages must cope
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.clock.microsecond // 1000:03d}Z"

    def seed(self, n: int) -> list[str]:
        out = []
        for i in range(1, n + 1):
            did = f"doc-{i:05d}"
            self.docs[did] = Doc(i, "post", f"Post {i} about topic {i % 17}",
                                 f"It discusses subject number {i} in some detail.", self._tick())
            out.append(did)
        return out

    def edit(self, ids: list[str]) -> None:
        for did in ids:
            self.docs[did].body += " Edited."
            self.docs[did].modified = self._tick()

    def delete(self, ids: list[str]) -> None:
        for did in ids:
            del self.docs[did]

    def expire(self) -> None:
        self.token = "revoked"

    def storm(self, n: int) -> None:
        self.storm_left = n

    def credentials_env(self) -> dict[str, str]:
        return {"SANITY_TEST_TOKEN": self.token}

    def connector_args(self, base_url: str) -> dict[str, Any]:
        return {"type": "sanity", "base_url": base_url, "credentials": {"token": "${SANITY_TEST_TOKEN}"},
                "options": {"dataset": "production"}}

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v{version}/data/query/{dataset}", self._query, methods=["GET"])])

    async def _query(self, request: Request) -> Response:
        self.requests += 1
        if self.storm_left > 0:
            self.storm_left -= 1
            self.throttled += 1
            return JSONResponse({"error": {"description": "Rate limit exceeded", "type": "rateLimitError"}}, 429,
                                headers={"retry-after": "0"})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "Unauthorized", "message": "Session not found", "statusCode": 401}, 401)
        import json as _json
        q = request.query_params
        query = q.get("query", "")
        n = int(_json.loads(q["$n"]))
        base = '!(_id in path("drafts.**")) && !(_type match "system.*")'
        rows = sorted(self.docs.items(), key=lambda r: r[0])
        if query == (f"*[{base} && (_updatedAt > $since || (_updatedAt == $since && _id > $after))]"
                     " | order(_updatedAt asc, _id asc)[0...$n]"):
            since, after = _json.loads(q["$since"]), _json.loads(q["$after"])
            hits = sorted(((d.modified, k, d) for k, d in rows if d.modified > since or (d.modified == since and k > after)),
                          key=lambda t: (t[0], t[1]))[:n]
            result: Any = [{"_id": k, "_type": "post", "_rev": f"r{d.id}", "_updatedAt": m, "title": d.title,
                            "body": [{"_type": "block", "children": [{"_type": "span", "text": d.body}]}]}
                           for m, k, d in hits]
        elif query == f"*[{base} && _id > $id] | order(_id asc)[0...$n]._id":
            after_id = _json.loads(q["$id"])
            result = [k for k, _d in rows if k > after_id][:n]
        else:
            return JSONResponse({"error": {"description": "unsupported query in the fake", "type": "queryParseError",
                                           "query": query}}, 400)
        return JSONResponse({"ms": 1, "query": query, "result": result})
