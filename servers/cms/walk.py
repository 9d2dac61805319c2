"""One sync pass of a CMS with no deletion feed (WordPress, Ghost, Strapi, Drupal).

A pass walks every kind (post types, collections, resources) page by page twice: first the
``changes`` since the watermark, then the ``ids`` still listed (the sweep that finds deletions,
see ``vsm_mcp.connectors.base``). The cursor holds ``since`` (the watermark) at rest; during a
pass also ``phase``, ``kind`` (an index), the position within the kind (``page`` for numbered
pages, ``next`` for a next link) and ``max`` (the newest ``modified`` seen, the next watermark).
Each connector says how it asks for a page and where the next one is; this says where it is.
"""

from __future__ import annotations

from typing import Any

from vsm_mcp.connectors.base import Change, Page


class Walk:
    """The cursor of one pass over ``kinds`` kinds; ``first`` is the position of a kind's first page."""

    def __init__(self, cursor: dict[str, Any] | None, kinds: int, **first: Any) -> None:
        cur = dict(cursor or {})
        if "phase" not in cur:  # a new pass
            cur = {"since": cur.get("since"), "phase": "changes", "kind": 0, **first, "max": cur.get("since")}
        self.cur, self.kinds, self.first = cur, kinds, first

    @property
    def phase(self) -> str:
        return str(self.cur["phase"])

    @property
    def kind(self) -> int:
        return int(self.cur["kind"])

    def page_after(self, pages: int) -> dict[str, Any] | None:
        """The next numbered page of this kind, or None after its last of ``pages``."""
        return {"page": self.cur["page"] + 1} if self.cur["page"] < pages else None

    def changed(self, changes: list[Change], then: dict[str, Any] | None) -> Page:
        """The page of ``changes`` just read; ``then``: the next position in this kind, None after its last page."""
        for c in changes:
            if c.modified and (self.cur["max"] is None or c.modified > self.cur["max"]):
                self.cur["max"] = c.modified
        self._advance(then, "ids")
        return Page(changes, self.cur, done=False)

    def listed(self, present: list[str], then: dict[str, Any] | None) -> Page:
        """The page of ids still listed; after the last one the pass ends and the watermark moves."""
        self._advance(then, "end")
        if self.cur["phase"] == "end":
            return Page([], {"since": self.cur["max"]}, done=True, present=present, sweep_end=True)
        return Page([], self.cur, done=False, present=present)

    def _advance(self, then: dict[str, Any] | None, after: str) -> None:
        if then:
            self.cur.update(then)
        elif self.cur["kind"] + 1 < self.kinds:
            self.cur["kind"] += 1
            self.cur.update(self.first)
        else:
            self.cur["phase"], self.cur["kind"] = after, 0
            self.cur.update(self.first)
