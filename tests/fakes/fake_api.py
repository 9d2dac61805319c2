"""What the fake product APIs in ``cms_apis`` have in common, so each fake states only where its
product's documented API differs: its routes, query parameters, bodies and error shapes.

* ``FakeApi`` — every fake: ``requests`` counts what was asked; ``storm(n)`` answers the next
  ``n`` requests 429 in the product's shape (``throttled`` counts them); then the credential
  check, a 401 in the product's shape. ``_gate`` does both, in that order, before a handler.
  The connector's side: ``connector_args`` (the ``connector_add`` arguments, the secret as a
  ``${ENV}`` reference), ``credentials_env`` (that environment) and ``expire`` (the secret revoked).
* ``FakeFeed`` — a product with a change feed (Contentful, Drive): each change is logged with
  the next sequence number, which the feed's tokens count.
* ``FakeCms`` — a CMS with no deletion feed: documents of a few kinds, listed only while
  published; ``seed`` / ``edit`` / ``delete`` as the contract test's hands on the source (every
  other deleted item is unpublished, the rest deleted for good, since both leave the listing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

T = TypeVar("T")


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
class FakeApi:
    """A product API: the 429 storm and the credential check (Bearer ``token`` unless overridden)."""

    THROTTLED: ClassVar[Any] = None  # the product's 429 body
    THROTTLE_HEADERS: ClassVar[dict[str, str]] = {"retry-after": "0"}
    UNAUTHORIZED: ClassVar[Any] = None  # the product's 401 body
    TYPE: ClassVar[str] = ""  # the connector type
    CREDENTIAL: ClassVar[str] = "token"  # the connector credential that carries ``token``
    ENV: ClassVar[str] = ""  # the environment variable that credential refers to
    REVOKED: ClassVar[str] = "revoked"  # ``token`` once expired
    OPTIONS: ClassVar[dict[str, Any]] = {}  # the connector options

    server: str = "cms"
    token: str = ""  # the secret the API accepts now
    storm_left: int = 0
    requests: int = 0
    throttled: int = 0

    def storm(self, n: int) -> None:
        self.storm_left = n

    def expire(self) -> None:
        self.token = self.REVOKED

    def credentials_env(self) -> dict[str, str]:
        return {self.ENV: self.token}

    def connector_args(self, base_url: str) -> dict[str, Any]:
        args: dict[str, Any] = {"type": self.TYPE, "base_url": base_url,
                                "credentials": {self.CREDENTIAL: f"${{{self.ENV}}}"}}
        if options := self._options():
            args["options"] = options
        return args

    def _options(self) -> dict[str, Any]:
        return dict(self.OPTIONS)

    def _gate(self, request: Request) -> Response | None:
        """The answer when the request does not get through (a storm, bad credentials), else None."""
        self.requests += 1
        if self.storm_left > 0:
            self.storm_left -= 1
            self.throttled += 1
            return self._throttle()
        if not self._authorized(request):
            return self._unauthorized()
        return None

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def _throttle(self) -> Response:
        return JSONResponse(self.THROTTLED, 429, headers=self.THROTTLE_HEADERS)

    def _unauthorized(self) -> Response:
        return JSONResponse(self.UNAUTHORIZED, 401)


@dataclass
class FakeFeed(FakeApi):
    """``log``: (sequence, item id) per change, oldest first; ``seq`` the last sequence number."""

    log: list[tuple[int, str]] = field(default_factory=list)
    seq: int = 0

    def _mark(self, ident: str) -> None:
        self.seq += 1
        self.log.append((self.seq, ident))


@dataclass
class FakeCms(FakeApi):
    """Documents keyed by the product's ids; item ``i`` of a seed is of kind ``KINDS[0]``, every
    fifth of ``KINDS[-1]``. ``modified`` moves one ``STEP`` of the source's clock per change."""

    KINDS: ClassVar[tuple[str, ...]] = ("post", "page")
    KEY: ClassVar[str] = "{i}"  # the product's id of item i
    EXTERNAL: ClassVar[str] = "{kind}/{key}"  # the connector's external id
    BODY: ClassVar[str] = "It discusses subject number {i} in some detail."
    EDITED: ClassVar[str] = " Edited."  # appended by an edit (``{clock}``: the time before it)
    UNPUBLISHED: ClassVar[str | None] = "draft"  # the status of an unpublished item; None: all deleted
    STAMP: ClassVar[str] = "%Y-%m-%dT%H:%M:%S"
    STEP: ClassVar[timedelta] = timedelta(seconds=1)

    docs: dict[str, Doc] = field(default_factory=dict)
    clock: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 9, 0, 0))

    def _tick(self) -> str:
        self.clock += self.STEP
        return self._stamp()

    def _stamp(self) -> str:
        return self.clock.strftime(self.STAMP)

    @staticmethod
    def _key(ext_id: str) -> str:
        return ext_id.rsplit("/", 1)[-1]

    # --- the scenario's hands on the source ------------------------------------------------
    def seed(self, n: int) -> list[str]:
        out = []
        for i in range(1, n + 1):
            kind = self.KINDS[0] if i % 5 else self.KINDS[-1]
            key = self.KEY.format(i=i)
            self.docs[key] = Doc(i, kind, f"{kind.title()} {i} about topic {i % 17}",
                                 self.BODY.format(i=i, kind=kind), self._tick())
            out.append(self.EXTERNAL.format(kind=kind, key=key))
        return out

    def ids(self) -> list[str]:
        return [self.EXTERNAL.format(kind=d.kind, key=k) for k, d in self.docs.items() if d.status == "publish"]

    def edit(self, ext_ids: list[str]) -> None:
        for e in ext_ids:
            d = self.docs[self._key(e)]
            d.body += self.EDITED.format(clock=self.clock.isoformat())
            d.modified, d.revision = self._tick(), d.revision + 1

    def delete(self, ext_ids: list[str]) -> None:
        for n, e in enumerate(ext_ids):
            key = self._key(e)
            if n % 2 == 0 and self.UNPUBLISHED is not None:  # saving the new status moves modified too
                self.docs[key].status, self.docs[key].modified = self.UNPUBLISHED, self._tick()
            else:
                del self.docs[key]

    # --- listing ---------------------------------------------------------------------------
    def _published(self, kind: str, after: Any = None, as_time: Callable[[str], Any] = str,
                   oldest_first: bool = False) -> list[tuple[str, Doc]]:
        """The published items of ``kind`` — only those changed after ``after`` (the product's
        watermark, compared with ``as_time(modified)``) if given —, oldest change first if asked."""
        rows = [(k, d) for k, d in self.docs.items() if d.kind == kind and d.status == "publish"]
        if after is not None:
            rows = [(k, d) for k, d in rows if as_time(d.modified) > after]
        if oldest_first:
            rows.sort(key=lambda r: r[1].modified)
        return rows


def page_of(rows: list[T], page: int, size: int) -> tuple[list[T], int]:
    """Page ``page`` (from 1) of ``size`` rows, and the number of pages (0 for no rows)."""
    return rows[(page - 1) * size: page * size], math.ceil(len(rows) / size)


def only_fields(items: list[dict[str, Any]], fields: str) -> list[dict[str, Any]]:
    """A sparse fieldset: each item with only the comma-separated ``fields`` (all without any)."""
    if not fields:
        return items
    keep = set(fields.split(","))
    return [{k: v for k, v in it.items() if k in keep} for it in items]
