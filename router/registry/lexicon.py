"""Query normalisation: the vocabulary agents use for tools, kept as data (``lexicon.toml``).

A task says "remember a fact", the tool says "assert a belief"; a task says "block deletes",
the tool that does it is the one that writes a rule. The lexicon is a list of groups of words
(and phrases) that mean one thing to a tool catalog. ``Lexicon.expand`` adds, to a query's own
terms, the other words of every group the query uses, at a lower weight (BM25 sees them; the
embedding sees the query as written), and names the query's *action*: the canonical action of
its first action word ("block" → create; a later verb is its object and is not expanded).
``tool_actions`` gives the actions a tool's name
says (``policy_put`` → create, update, store); the ranker compares the two
(router/registry/ranker.py), with a weight fitted on the dev set.

Why data and not code: the groups are general API vocabulary, reviewed and extended as such,
and measured as a whole (``vsm-mcp bench retrieval --cv`` with and without it), never edited to
fix one query.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from router.registry.tool_text import STOPWORDS, split_identifier, stem
from vsm_mcp.errors import ConfigError

DEFAULT_PATH = Path(__file__).with_name("lexicon.toml")

Phrase = tuple[str, ...]  # stems, in order


def _stems(text: str) -> Phrase:
    return tuple(stem(w) for w in split_identifier(text))


@dataclass(frozen=True)
class Group:
    """One concept: its phrases as stem sequences and, for verbs, the canonical action."""

    phrases: tuple[Phrase, ...]
    action: str = ""

    @property
    def terms(self) -> frozenset[str]:
        """Every content stem of the group (stop words of a phrase carry nothing for BM25)."""
        stop = _stop_stems()
        return frozenset(w for p in self.phrases for w in p if w not in stop)


@cache
def _stop_stems() -> frozenset[str]:
    return frozenset(stem(w) for w in STOPWORDS)


class Lexicon:
    def __init__(self, groups: Sequence[Group]) -> None:
        self.groups = tuple(groups)
        self._terms = tuple(g.terms for g in self.groups)
        index: dict[str, list[tuple[Phrase, int]]] = {}
        for gi, group in enumerate(self.groups):
            for phrase in group.phrases:
                index.setdefault(phrase[0], []).append((phrase, gi))
        for entries in index.values():
            entries.sort(key=lambda e: -len(e[0]))  # the longest phrase at a position wins
        self._index = index

    @classmethod
    def load(cls, path: Path = DEFAULT_PATH) -> Lexicon:
        """The lexicon in ``path``; ConfigError names the file and the group that is wrong."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"lexicon {path}: {exc}") from None
        groups = []
        for i, raw in enumerate(data.get("group", []), 1):
            words = raw.get("words") if isinstance(raw, Mapping) else None
            action = raw.get("action", "") if isinstance(raw, Mapping) else ""
            if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
                raise ConfigError(f"lexicon {path}: group {i} needs 'words', a list of non-empty strings")
            if not isinstance(action, str):
                raise ConfigError(f"lexicon {path}: group {i}: 'action' must be a string")
            phrases = tuple(dict.fromkeys(p for p in (_stems(w) for w in words) if p))
            groups.append(Group(phrases, action))
        return cls(groups)

    def _matches(self, words: Phrase) -> list[tuple[int, int]]:
        """(position, group) of every group phrase found in ``words``, in order of position."""
        found: list[tuple[int, int]] = []
        for pos, word in enumerate(words):
            for phrase, gi in self._index.get(word, ()):
                if words[pos : pos + len(phrase)] == phrase:
                    found.append((pos, gi))
        return found

    def expand(self, query: str, terms: Mapping[str, float], weight: float) -> tuple[dict[str, float], frozenset[str]]:
        """``terms`` (the query's own, weight 1) plus the words of every group the query uses
        at ``weight``, and the query's action(s): those of its first action word."""
        out = dict(terms)
        actions: set[str] = set()
        first: int | None = None
        for pos, gi in self._matches(_stems(query)):
            action = self.groups[gi].action
            if action and first is not None and pos != first:
                continue  # a later verb is the object of the first ("block deletes"): not expanded
            if action:
                first = pos
                actions.add(action)
            if weight > 0:
                for term in self._terms[gi]:
                    out.setdefault(term, weight)
        return out, frozenset(actions)

    def related(self, stem: str) -> frozenset[str]:
        """Every stem that shares a group with the one-word ``stem`` (itself included)."""
        out = {stem}
        for phrase, gi in self._index.get(stem, ()):
            if len(phrase) == 1:
                out |= self._terms[gi]
        return frozenset(out)

    def tool_actions(self, name: str) -> frozenset[str]:
        """The canonical actions the words of a tool's name say (``get_file_info`` → read)."""
        return frozenset(a for _, gi in self._matches(_stems(name)) if (a := self.groups[gi].action))


@cache
def default_lexicon() -> Lexicon:
    return Lexicon.load()
