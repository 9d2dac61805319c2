"""What one product's connector implements, and the values it hands to the sync engine.

A connector is stateless: everything it needs to continue lives in its ``cursor`` (a JSON
dict it alone interprets). ``page(cursor)`` fetches one page of changes and returns the cursor
*after* that page; the engine saves that cursor only once the page's items are ingested (or
deleted), so a crash re-fetches at most the page in flight and a failed request leaves the
cursor where it was.

Deletions come in two ways, depending on what the product can tell:

* an explicit change (``Change(deleted=True)``): Contentful's ``DeletedEntry``, Drive's
  ``removed`` / trashed files;
* a *sweep* (``Page.present`` + ``Page.sweep_end``), for sources with no deletion feed
  (WordPress): the connector lists the ids that still exist; at ``sweep_end`` every item synced
  before but not listed in this sync is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from vsm_mcp.connectors.http import GuardedHttp


@dataclass
class Change:
    """One item as the source has it now (or its deletion)."""

    external_id: str
    deleted: bool = False
    title: str = ""
    text: str = ""
    content_type: str = "text/html"
    url: str = ""
    modified: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Page:
    changes: list[Change]
    cursor: dict[str, Any]  # the cursor once this page is applied
    done: bool  # no more pages in this sync
    present: list[str] | None = None  # ids listed as still existing (a sweep page)
    sweep_end: bool = False  # the sweep is complete: delete what it did not list


@dataclass(frozen=True)
class Source:
    """A configured connector as a product implementation sees it."""

    name: str
    type: str
    base_url: str
    credentials: dict[str, str]  # resolved values (never stored)
    options: dict[str, Any]
    page_size: int


class Connector(Protocol):
    type: str

    def validate(self, base_url: str, credentials: dict[str, str], options: dict[str, Any]) -> None:
        """Raise InvalidArguments naming what is missing (e.g. Contentful's space id)."""

    async def page(self, http: GuardedHttp, source: Source, cursor: dict[str, Any] | None) -> Page:
        """One page of changes after ``cursor`` (None: a full sync from the beginning)."""
