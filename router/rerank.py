"""Optional third stage of tool search: a language model reorders the best candidates.

Off unless ``VSM_TOOL_SEARCH_RERANK_MODEL`` names a model of the LLM-CDN. Then ``ToolSearch.find``
(find_tools, ``GET /v1/tools?q=``, ``vsm-mcp tools search``, servers' ``ctx.tools`` find_tools)
shows the model the query and its top ``VSM_TOOL_SEARCH_RERANK_CANDIDATES`` tools (name + one
line each) through ``llm__llm_complete`` — a routed call as the *caller* (its tenant, its
``llm:call`` grant, its tenant's policy, rate limits, audit) — and takes the model's order.

What it never does, and why:

* **block or fail a search.** The call has ``VSM_TOOL_SEARCH_RERANK_TIMEOUT_S``; a timeout, a
  routing error, a tool error or an answer naming no candidate leaves the first-stage order, with
  one log line. A caller without ``llm:call`` is not reranked (no call, no log line).
* **change ``no_match``.** The verdict stays the calibrated ranker's (router/registry/ranker.py),
  whose false-match rate is measured on held-out servers; a model's opinion is not measured
  (there is no real model here). So a no-match query is not sent at all (nothing to reorder
  that the caller should take), and a model that answers ``NONE`` for a matched query keeps the
  first-stage order (``rerank.status == "none"``, for the caller to see) without turning it
  into a no-match.
* **change scores.** Each tool keeps its calibrated probability; after a rerank the order follows
  the model, so scores need not decrease down the list (``reranked: true`` says so).
* **load the model's client on a search's clock.** The in-process llm server imports litellm
  (~2.8 s, more than the default budget) before its first provider call; ``warm_up`` has that
  done at router start (router/runtime.py waits for it as for the upstreams), so the first
  search is reranked within its budget.

The request is deterministic (temperature 0, seed 0, the same prompt for the same query and
candidates), so the LLM-CDN's exact cache answers a repeated query without a provider call. The
seed also keeps these requests out of the semantic cache: two queries' prompts share their long
candidate list, and one query's ranking must not be served for another.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import anyio

from router.registry.catalog import Catalog
from router.registry.index import Rerank, SearchHit, SearchResult
from vsm_mcp.auth import Principal, grants
from vsm_mcp.config import Settings
from vsm_mcp.errors import PolicyDenied, VsmError
from vsm_mcp.hooks import ToolCaller

log = logging.getLogger(__name__)

RERANK_TOOL = "llm__llm_complete"
ENGINE_KEY = "llm_cdn"  # ctx.extras: the in-process llm server's engine (router/edge/openai.py finds it so too)
LINE_CHARS = 160  # one line of description per candidate: enough to tell tools apart, few tokens

SYSTEM = (
    "You rank software tools for a task. Answer with the names of the tools that fit the task, best first, "
    "one name per line, exactly as written in the list, and nothing else. If no tool in the list fits, "
    "answer NONE."
)


def one_line(hit: SearchHit) -> str:
    """``name: first line of the description`` (or the title), whitespace collapsed, cut."""
    rec = hit.record
    text = " ".join((rec.description or rec.title).split())
    if len(text) > LINE_CHARS:
        text = text[: LINE_CHARS - 1].rstrip() + "…"
    return f"{rec.public_name}: {text}" if text else rec.public_name


def messages(query: str, candidates: Sequence[SearchHit]) -> list[dict[str, str]]:
    """The chat request's messages; a pure function of the query and the candidates (cache key)."""
    listing = "\n".join(f"- {one_line(h)}" for h in candidates)
    user = f"Task: {' '.join(query.split())}\n\nTools:\n{listing}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


_NAME = re.compile(r"[A-Za-z0-9_-]+")


def parse_ranking(text: str, names: Sequence[str]) -> list[str] | None:
    """The candidates ``text`` names, in its order; [] for an explicit NONE; None when it names
    none of them and is not NONE (unusable). Unknown words are ignored, repeats count once, a bare
    tool name (``llm_complete`` for ``llm__llm_complete``) counts when only one candidate has it."""
    known = {n: n for n in names}
    bare: dict[str, list[str]] = {}
    for n in names:
        if "__" in n:
            bare.setdefault(n.split("__", 1)[1], []).append(n)
    for short, full in bare.items():
        if len(full) == 1 and short not in known:
            known[short] = full[0]
    out: list[str] = []
    for word in _NAME.findall(text):
        name = known.get(word)
        if name is not None and name not in out:
            out.append(name)
    if out:
        return out
    return [] if re.fullmatch(r"\W*none\W*", text.strip(), flags=re.I) else None


def reorder(hits: Sequence[SearchHit], ranked: Sequence[str]) -> list[SearchHit]:
    """``hits`` with the named ones first in ``ranked`` order, the rest in their first-stage order."""
    by_name = {h.record.public_name: h for h in hits}
    first = [by_name[n] for n in ranked if n in by_name]
    chosen = {h.record.public_name for h in first}
    return first + [h for h in hits if h.record.public_name not in chosen]


def _answer_text(payload: Any) -> str:
    """The completion's text from llm_complete's ``{cache, model, response}``; ValueError otherwise."""
    try:
        content = payload["response"]["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"unexpected llm_complete result shape ({exc!r})") from None
    if not isinstance(content, str):
        raise ValueError("the model's answer has no text")
    return content


class Reranker:
    """Reorders a ``SearchResult``'s best hits with one routed ``llm__llm_complete`` call."""

    def __init__(self, caller: ToolCaller, catalog: Catalog, model: str, *, candidates: int = 10,
                 timeout_s: float = 2.0) -> None:
        self.caller = caller
        self.catalog = catalog
        self.model = model
        self.candidates = candidates
        self.timeout_s = timeout_s
        self.warmed = False  # warm_up has loaded the in-process llm server's provider library

    async def warm_up(self, extras: Mapping[str, Any]) -> None:
        """Load, off the request path, what the first rerank call would otherwise load inside its
        budget: the in-process llm server's provider library (its engine's blocking ``warm_up``,
        on a worker thread). An llm server in another process warms itself: nothing to do here."""
        warm = getattr(extras.get(ENGINE_KEY), "warm_up", None)
        if warm is None:
            return
        try:
            # abandoned on cancel: a router stopped while starting does not wait for an import
            await anyio.to_thread.run_sync(warm, abandon_on_cancel=True)
        except Exception as exc:  # the first rerank meets the same problem and reports it
            log.warning("tool search rerank: loading %s's provider library failed (%s: %s)",
                        RERANK_TOOL, type(exc).__name__, exc)
            return
        self.warmed = True

    def permitted(self, principal: Principal) -> bool:
        """The caller's tenant sees the LLM tool and the caller's scopes grant it (policy is the
        dispatcher's: a policy denial is a ``denied`` rerank too, found when the call is made)."""
        entry = self.catalog.get(RERANK_TOOL, principal.tenant_id)
        return entry is not None and entry.available and grants(principal.scopes, entry.tags)

    async def rerank(self, principal: Principal, query: str, result: SearchResult, limit: int) -> SearchResult:
        """``result`` (searched with at least ``self.candidates`` hits) reordered and cut to ``limit``."""
        if result.no_match or len(result.hits) < 2:
            return self._keep(result, limit, Rerank("skipped"))
        if not self.permitted(principal):
            return self._keep(result, limit, Rerank("denied"))
        pool = result.hits[: self.candidates]
        t0 = time.perf_counter()
        status, cache, ranked = await self._ask(principal, query, pool)
        info = Rerank(status, cache, round((time.perf_counter() - t0) * 1000, 3))
        if not ranked:
            return self._keep(result, limit, info)
        hits = reorder(pool, ranked) + list(result.hits[self.candidates :])
        return replace(result, hits=hits[:limit], reranked=True, rerank=info)

    async def _ask(self, principal: Principal, query: str, pool: Sequence[SearchHit]) -> tuple[str, str | None, list[str]]:
        arguments = {"messages": messages(query, pool), "model": self.model,
                     "params": {"temperature": 0, "seed": 0, "max_tokens": 24 * len(pool) + 16}}
        try:
            async with asyncio.timeout(self.timeout_s):
                res = await self.caller.call(principal, RERANK_TOOL, arguments, source="rerank")
        except TimeoutError:
            log.warning("tool search rerank: %s gave no answer within %.2fs; first-stage order kept",
                        self.model, self.timeout_s)
            return "timeout", None, []
        except PolicyDenied:  # the tenant's policy decided (and the dispatcher audited it): not a fault
            return "denied", None, []
        except VsmError as exc:
            log.warning("tool search rerank: %s failed (%s); first-stage order kept", RERANK_TOOL, exc)
            return "failed", None, []
        payload = getattr(res, "structured_content", None)
        if getattr(res, "is_error", False) or not isinstance(payload, dict):
            text = " ".join(getattr(c, "text", "") for c in getattr(res, "content", []) or [])
            log.warning("tool search rerank: %s answered an error (%s); first-stage order kept", RERANK_TOOL, text[:200])
            return "failed", None, []
        cache = str(payload.get("cache")) if payload.get("cache") is not None else None
        try:
            text = _answer_text(payload)
        except ValueError as exc:
            log.warning("tool search rerank: %s; first-stage order kept", exc)
            return "unparsed", cache, []
        ranked = parse_ranking(text, [h.record.public_name for h in pool])
        if ranked is None:
            log.warning("tool search rerank: %s named none of the candidates (%r); first-stage order kept",
                        self.model, text[:120])
            return "unparsed", cache, []
        return ("reranked" if ranked else "none"), cache, ranked

    @staticmethod
    def _keep(result: SearchResult, limit: int, info: Rerank) -> SearchResult:
        return replace(result, hits=result.hits[:limit], reranked=False, rerank=info)


def make_reranker(settings: Settings, caller: ToolCaller, catalog: Catalog) -> Reranker | None:
    """The configured reranker, or None when ``VSM_TOOL_SEARCH_RERANK_MODEL`` is empty (the default)."""
    model = settings.tool_search_rerank_model.strip()
    if not model:
        return None
    return Reranker(caller, catalog, model, candidates=settings.tool_search_rerank_candidates,
                    timeout_s=settings.tool_search_rerank_timeout_s)
