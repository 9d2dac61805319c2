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
* ``FakeDrive``, ``FakeGhost``, ``FakeStrapi``, ``FakeDrupal``, ``FakeSanity``: see each class.

All: ``storm(n)`` answers the next ``n`` requests 429 (with the product's wait header), and
``requests`` counts what was asked (``tests/fakes/fake_api.py``: what they share).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.fake_api import Doc, FakeCms, FakeFeed, only_fields, page_of


@dataclass
class FakeWordPress(FakeCms):
    UNAUTHORIZED: ClassVar[Any] = {"code": "incorrect_password", "message": "The provided password is an invalid "
                                   "application password.", "data": {"status": 401}}
    THROTTLED: ClassVar[Any] = {"code": "rest_too_many_requests", "message": "Too many requests.",
                                "data": {"status": 429}}
    BODY: ClassVar[str] = "<p>Body of {kind} {i}. It discusses subject number {i} in some detail.</p>"
    EDITED: ClassVar[str] = "<p>Edited at {clock}.</p>"
    UNPUBLISHED: ClassVar[str | None] = "trash"

    user: str = "admin"
    password: str = "abcd efgh ijkl mnop qrst uvwx"

    def expire(self) -> None:
        self.password = "revoked"

    def credentials_env(self) -> dict[str, str]:
        return {"WP_TEST_USER": self.user, "WP_TEST_APP_PASSWORD": self.password}

    def connector_args(self, base_url: str) -> dict[str, Any]:
        return {"type": "wordpress", "base_url": base_url,
                "credentials": {"username": "${WP_TEST_USER}", "password": "${WP_TEST_APP_PASSWORD}"}}

    # --- HTTP ------------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/wp-json/wp/v2/{kind}", self._list, methods=["GET"])])

    def _authorized(self, request: Request) -> bool:  # no credentials: public content only
        auth = request.headers.get("authorization", "")
        if not auth:
            return True
        user, _, pw = base64.b64decode(auth.split(" ", 1)[1]).decode().partition(":")
        return user == self.user and pw == self.password

    async def _list(self, request: Request) -> Response:
        if (err := self._gate(request)) is not None:
            return err
        kind = request.path_params["kind"]
        if kind not in ("posts", "pages"):
            return JSONResponse({"code": "rest_no_route", "message": "No route was found.", "data": {"status": 404}}, 404)
        q = request.query_params
        per_page, page = int(q.get("per_page", "10")), int(q.get("page", "1"))
        if not 1 <= per_page <= 100:
            return JSONResponse({"code": "rest_invalid_param", "message": "Invalid parameter(s): per_page",
                                 "data": {"status": 400}}, 400)
        rows = [d for _k, d in self._published(kind[:-1], q.get("modified_after"))]
        if q.get("orderby") == "modified":
            rows.sort(key=lambda d: (d.modified, d.id), reverse=q.get("order") != "asc")
        else:
            rows.sort(key=lambda d: d.id, reverse=True)  # WordPress's default: newest first
        chunk, pages = page_of(rows, page, per_page)
        if page > max(pages, 1):
            return JSONResponse({"code": "rest_post_invalid_page_number", "message": "The page number requested is "
                                 "larger than the number of pages available.", "data": {"status": 400}}, 400)
        body = only_fields([self._json(d, request) for d in chunk], q.get("_fields", ""))
        return JSONResponse(body, headers={"x-wp-total": str(len(rows)), "x-wp-totalpages": str(pages)})

    @staticmethod
    def _json(d: Doc, request: Request) -> dict[str, Any]:
        return {"id": d.id, "date": d.modified, "modified": d.modified, "modified_gmt": d.modified, "slug": f"{d.kind}-{d.id}",
                "status": d.status, "type": d.kind, "link": f"{request.base_url}?p={d.id}",
                "title": {"rendered": d.title}, "content": {"rendered": d.body, "protected": False}}


@dataclass
class FakeContentful(FakeFeed):
    THROTTLED: ClassVar[Any] = {"sys": {"type": "Error", "id": "RateLimitExceeded"}, "message": "You have exceeded "
                                "the rate limit."}
    THROTTLE_HEADERS: ClassVar[dict[str, str]] = {"x-contentful-ratelimit-reset": "0"}
    UNAUTHORIZED: ClassVar[Any] = {"sys": {"type": "Error", "id": "AccessTokenInvalid"}, "message": "The access token "
                                   "you sent could not be found or is invalid."}
    TYPE: ClassVar[str] = "contentful"
    ENV: ClassVar[str] = "CONTENTFUL_TEST_TOKEN"
    REVOKED: ClassVar[str] = "rotated"

    space: str = "spc1"
    token: str = "cda-token-1"
    entries: dict[str, Doc] = field(default_factory=dict)
    delta_page: int = 100

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

    def _options(self) -> dict[str, Any]:
        return {"space": self.space, "environment": "master"}

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
        if (err := self._gate(request)) is not None:
            return err
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
class FakeDrive(FakeFeed):
    """Google Drive API v3: ``changes/startPageToken``, ``changes`` (``pageToken``, ``pageSize``,
    ``includeRemoved``; ``nextPageToken`` or ``newStartPageToken``; one change per file, its latest
    state; ``removed`` for deleted files, ``file.trashed`` for trashed ones), ``files`` (``q =
    "trashed = false"``, ``pageToken``), ``files/{id}/export?mimeType=`` (Google Docs only) and
    ``files/{id}?alt=media`` (binary files only); Bearer token, 401 ``UNAUTHENTICATED``; rate
    limits as 429 and 403 ``userRateLimitExceeded`` (no Retry-After, as Drive does)."""

    TYPE: ClassVar[str] = "gdrive"
    ENV: ClassVar[str] = "GDRIVE_TEST_TOKEN"
    REVOKED: ClassVar[str] = "ya29.expired"

    token: str = "ya29.test-token"
    server: str = "drive"
    files: dict[str, DriveFile] = field(default_factory=dict)
    change_pages: list[str] = field(default_factory=list)  # pageToken of every changes.list served
    delay_s: float = 0.0  # before answering changes.list (a slow API, so a test can act between pages)

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

    def _throttle(self) -> Response:  # every other one as Drive's 403, no Retry-After either way
        if self.storm_left % 2:
            return self._error(403, "userRateLimitExceeded", "User Rate Limit Exceeded")
        return self._error(429, "rateLimitExceeded", "Rate Limit Exceeded", "RESOURCE_EXHAUSTED")

    def _unauthorized(self) -> Response:
        return self._error(401, "authError", "Request had invalid authentication credentials.", "UNAUTHENTICATED")

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
class FakeGhost(FakeCms):
    """Ghost Content API: ``GET /ghost/api/content/{posts,pages}/`` with ``key``, ``limit`` (≤ 100
    here), ``page``, ``order=updated_at asc``, ``filter=updated_at:>'YYYY-MM-DD HH:MM:SS'``,
    ``fields``, ``formats=html``; ``{"posts": [...], "meta": {"pagination": {page, limit, pages,
    total, next, prev}}}``; an unknown key is 401 ``UnauthorizedError``; 429 with Retry-After.
    Unpublished and deleted posts leave the listing (no deletion feed)."""

    THROTTLED: ClassVar[Any] = {"errors": [{"message": "Too many requests", "type": "TooManyRequestsError"}]}
    UNAUTHORIZED: ClassVar[Any] = {"errors": [{"message": "Unknown Content API Key", "type": "UnauthorizedError"}]}
    KEY: ClassVar[str] = "{i:024x}"
    BODY: ClassVar[str] = "<p>Body of {kind} {i}. It discusses subject number {i} in some detail.</p>"
    EDITED: ClassVar[str] = "<p>Edited.</p>"
    STAMP: ClassVar[str] = "%Y-%m-%dT%H:%M:%S.000+00:00"
    TYPE: ClassVar[str] = "ghost"
    CREDENTIAL: ClassVar[str] = "key"
    ENV: ClassVar[str] = "GHOST_TEST_CONTENT_KEY"
    REVOKED: ClassVar[str] = "0000000000000000000000000a"

    token: str = "22444f78447824223cefc48062"  # the Content API key

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/ghost/api/content/{kind}/", self._list, methods=["GET"])])

    def _authorized(self, request: Request) -> bool:
        return request.query_params.get("key") == self.token

    async def _list(self, request: Request) -> Response:
        if (err := self._gate(request)) is not None:
            return err
        q, kind = request.query_params, request.path_params["kind"]
        since = None
        if flt := q.get("filter", ""):
            assert flt.startswith("updated_at:>'") and flt.endswith("'"), flt
            since = datetime.strptime(flt[len("updated_at:>'"):-1], "%Y-%m-%d %H:%M:%S")
        rows = self._published(kind[:-1], since, lambda m: datetime.fromisoformat(m).replace(tzinfo=None),
                               oldest_first=q.get("order") == "updated_at asc")
        limit, page = min(int(q.get("limit", "15")), 100), int(q.get("page", "1"))
        chunk, pages = page_of(rows, page, limit)
        pages = max(1, pages)
        items = [{"id": g, "uuid": g, "title": d.title, "slug": f"{d.kind}-{d.id}", "html": d.body,
                  "updated_at": d.modified, "url": f"{request.base_url}{d.kind}-{d.id}/"} for g, d in chunk]
        return JSONResponse({kind: only_fields(items, q.get("fields", "")), "meta": {"pagination": {
            "page": page, "limit": limit, "pages": pages, "total": len(rows),
            "next": page + 1 if page < pages else None, "prev": page - 1 if page > 1 else None}}})


@dataclass
class FakeStrapi(FakeCms):
    """Strapi 5 REST API: ``GET /api/{collection}`` with ``pagination[page]`` / ``pagination[pageSize]``
    (≤ 100 here), ``sort=updatedAt:asc``, ``filters[updatedAt][$gt]``, ``fields[0]``; ``{"data": [...],
    "meta": {"pagination": {page, pageSize, pageCount, total}}}``; API token as Bearer, a bad one
    is 401 ``UnauthorizedError``; 429 with Retry-After. Deleted or unpublished entries leave the
    listing (no deletion feed)."""

    THROTTLED: ClassVar[Any] = {"data": None, "error": {"status": 429, "name": "RateLimitError",
                                                        "message": "Too many requests, please try again later."}}
    UNAUTHORIZED: ClassVar[Any] = {"data": None, "error": {"status": 401, "name": "UnauthorizedError",
                                                           "message": "Missing or invalid credentials"}}
    KINDS: ClassVar[tuple[str, ...]] = ("articles", "pages")  # collections
    KEY: ClassVar[str] = "d{i:023d}"  # documentId
    STAMP: ClassVar[str] = "%Y-%m-%dT%H:%M:%S.000Z"
    TYPE: ClassVar[str] = "strapi"
    ENV: ClassVar[str] = "STRAPI_TEST_TOKEN"
    OPTIONS: ClassVar[dict[str, Any]] = {"collections": ["articles", "pages"]}

    token: str = "strapi-api-token-1"

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/{col}", self._list, methods=["GET"])])

    async def _list(self, request: Request) -> Response:
        if (err := self._gate(request)) is not None:
            return err
        col, q = request.path_params["col"], request.query_params
        rows = self._published(col, q.get("filters[updatedAt][$gt]"), oldest_first=q.get("sort") == "updatedAt:asc")
        size, page = min(int(q.get("pagination[pageSize]", "25")), 100), int(q.get("pagination[page]", "1"))
        chunk, count = page_of(rows, page, size)
        data = [{"id": d.id, "documentId": k, "title": d.title, "body": d.body, "updatedAt": d.modified,
                 "publishedAt": d.modified} for k, d in chunk]
        if q.get("fields[0]"):  # id and documentId always come
            data = [{"id": x["id"], "documentId": x["documentId"], q["fields[0]"]: x.get(q["fields[0]"])} for x in data]
        return JSONResponse({"data": data, "meta": {"pagination": {"page": page, "pageSize": size,
                                                                   "pageCount": max(1, count), "total": len(rows)}}})


@dataclass
class FakeDrupal(FakeCms):
    """Drupal JSON:API: ``GET /jsonapi/node/{bundle}`` with ``filter[changed][condition][path|operator|value]``
    (value a Unix timestamp), ``sort=changed``, ``page[limit]`` (≤ 50) / ``page[offset]``, sparse
    ``fields[node--bundle]``; ``{"data": [{type, id, attributes: {title, body: {value, processed},
    changed, status}}], "links": {"next": {"href"}}}``; OAuth Bearer, a bad token is 401 with a
    JSON:API ``errors`` body; 429 with Retry-After. Unpublished or deleted nodes leave the listing."""

    THROTTLED: ClassVar[Any] = {"errors": [{"status": "429", "title": "Too Many Requests"}]}
    UNAUTHORIZED: ClassVar[Any] = {"jsonapi": {"version": "1.0"}, "errors": [{"title": "Unauthorized", "status": "401",
                                   "detail": "The used authentication method is not allowed on this route."}]}
    KINDS: ClassVar[tuple[str, ...]] = ("article", "page")  # bundles
    KEY: ClassVar[str] = "00000000-0000-4000-8000-{i:012d}"  # a UUID
    EXTERNAL: ClassVar[str] = "node/{kind}/{key}"
    BODY: ClassVar[str] = "<p>It discusses subject number {i} in some detail.</p>"
    EDITED: ClassVar[str] = "<p>Edited.</p>"
    UNPUBLISHED: ClassVar[str | None] = "unpublished"
    STAMP: ClassVar[str] = "%Y-%m-%dT%H:%M:%S+00:00"
    TYPE: ClassVar[str] = "drupal"
    ENV: ClassVar[str] = "DRUPAL_TEST_TOKEN"
    REVOKED: ClassVar[str] = "expired"
    OPTIONS: ClassVar[dict[str, Any]] = {"resources": ["node/article", "node/page"]}

    token: str = "drupal-oauth-token-1"

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/jsonapi/node/{bundle}", self._list, methods=["GET"])])

    async def _list(self, request: Request) -> Response:
        if (err := self._gate(request)) is not None:
            return err
        bundle, q = request.path_params["bundle"], request.query_params
        after = None
        if q.get("filter[changed][condition][path]") == "changed":
            assert q.get("filter[changed][condition][operator]") == ">"
            after = int(q["filter[changed][condition][value]"])
        rows = self._published(bundle, after, lambda m: datetime.fromisoformat(m).timestamp(),
                               oldest_first=q.get("sort") == "changed")
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
            links["next"] = {"href": f"{str(request.url).split('?', 1)[0]}?{urlencode(params)}"}
        return JSONResponse({"jsonapi": {"version": "1.0"}, "data": data, "links": links})


@dataclass
class FakeSanity(FakeCms):
    """Sanity's HTTP query API: ``GET /v{version}/data/query/{dataset}?query=<GROQ>&$param=<JSON>``
    → ``{"result": ..., "ms", "query"}``. Not a GROQ engine: it answers the two query shapes the
    connector sends (keyset over ``(_updatedAt, _id)``, and ``_id`` projection keyset), checks
    them verbatim, and refuses anything else with Sanity's 400 ``queryParseError``. Bearer token,
    401 ``Unauthorized``; 429 with Retry-After. Deleted documents are simply gone."""

    THROTTLED: ClassVar[Any] = {"error": {"description": "Rate limit exceeded", "type": "rateLimitError"}}
    UNAUTHORIZED: ClassVar[Any] = {"error": "Unauthorized", "message": "Session not found", "statusCode": 401}
    KINDS: ClassVar[tuple[str, ...]] = ("post",)
    KEY: ClassVar[str] = "doc-{i:05d}"
    EXTERNAL: ClassVar[str] = "{key}"
    UNPUBLISHED: ClassVar[str | None] = None  # no drafts here: a deleted document is gone
    STEP: ClassVar[timedelta] = timedelta(milliseconds=500)  # two edits may share a second: keyset pages must cope
    TYPE: ClassVar[str] = "sanity"
    ENV: ClassVar[str] = "SANITY_TEST_TOKEN"
    OPTIONS: ClassVar[dict[str, Any]] = {"dataset": "production"}

    token: str = "sk-sanity-read-1"

    def _stamp(self) -> str:
        return self.clock.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.clock.microsecond // 1000:03d}Z"

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v{version}/data/query/{dataset}", self._query, methods=["GET"])])

    async def _query(self, request: Request) -> Response:
        if (err := self._gate(request)) is not None:
            return err
        q = request.query_params
        query = q.get("query", "")
        n = int(json.loads(q["$n"]))
        base = '!(_id in path("drafts.**")) && !(_type match "system.*")'
        rows = sorted(self.docs.items(), key=lambda r: r[0])
        if query == (f"*[{base} && (_updatedAt > $since || (_updatedAt == $since && _id > $after))]"
                     " | order(_updatedAt asc, _id asc)[0...$n]"):
            since, after = json.loads(q["$since"]), json.loads(q["$after"])
            hits = sorted(((d.modified, k, d) for k, d in rows if d.modified > since or (d.modified == since and k > after)),
                          key=lambda t: (t[0], t[1]))[:n]
            result: Any = [{"_id": k, "_type": "post", "_rev": f"r{d.id}", "_updatedAt": m, "title": d.title,
                            "body": [{"_type": "block", "children": [{"_type": "span", "text": d.body}]}]}
                           for m, k, d in hits]
        elif query == f"*[{base} && _id > $id] | order(_id asc)[0...$n]._id":
            after_id = json.loads(q["$id"])
            result = [k for k, _d in rows if k > after_id][:n]
        else:
            return JSONResponse({"error": {"description": "unsupported query in the fake", "type": "queryParseError",
                                           "query": query}}, 400)
        return JSONResponse({"ms": 1, "query": query, "result": result})
