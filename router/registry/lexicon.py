"""Query normalisation: the vocabulary agents use for tools, kept as data (``lexicon.toml``).

A task says "remember a fact", the tool says "assert a belief"; a task says "block deletes",
the tool that does it is the one that writes a rule. The lexicon is a list of groups of words
(and phrases) that mean one thing to a tool catalog. ``Lexicon.expand`` adds, to a query's own
terms, the other words of every group the query uses, at a lower weight (BM25 sees them; the
embedding sees the query as written), and names the query's *action*: the canonical action of
its first action word ("block" → create; a later verb is its object and is not expanded).
A participle after "be" is no action ("when was it created" asks about a state).
``tool_actions`` gives the actions a tool's name says (``policy_put`` → create, update, store),
or, when the name says none (``port_forward``), its description's first word; the ranker
compares the two
(router/registry/ranker.py), with a weight fitted on the dev set. A group that *governs* other
actions (block, deny, allow: what a policy does) makes the actions after it the subject of the
rule, not the tool's job: in "block deletes" the query's own "delete" weighs as a lexicon word.

``entities`` types the things a query names by their shape — ``main.go`` is a file,
``1.1.1.1`` an IP address, ``localhost:5432`` a host and port — and gives the words for those
types (``[[entity]]`` tables: a regular expression and its words). They join the query's terms
at the lexicon's weight and take the place of the thing in the text the query is embedded as
("what's inside a file"): MiniLM does not know that main.go is a file, and reads "video.mp4" as
a video.

A typed thing, quoted text ("click 'Add to cart'", "commit with message 'update docs'"), a
name after "called" and a purpose clause ("… so I can click things") are *literals*: their
words name something or say why, not what to do. ``intent`` is the query without its
literals; the lexicon, the query's action and its own full-weight terms come from it, and a
literal's words count at the lexicon's weight only (``db.yaml`` is not a database task,
"notes.log" not a log query, the "click" of "so I can click things" not the task).

Why data and not code: the groups are general API vocabulary, reviewed and extended as such,
and measured as a whole (``vsm-mcp bench retrieval --cv`` with and without it), never edited to
fix one query.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import NamedTuple

from router.registry.tool_text import STOPWORDS, is_plural, plural_stems, split_identifier, stem
from vsm_mcp.errors import ConfigError

DEFAULT_PATH = Path(__file__).with_name("lexicon.toml")

# Text in quotes that open after a non-word and close before one ("'npm run build'"); an
# apostrophe inside a word ("we'll") neither opens nor closes.
_QUOTED = re.compile(r"""(?<![\w'"`])(['"`])[^'"`\n]{1,120}?\1(?![\w'"`])""")
# A verb of the lexicon right after one of these is a noun: "the build is eating my terminal",
# "my edits". Held out: neutral on the dev set, +1 query at rank 1 on the built-in check half.
_DETERMINERS = frozenset("the a an my our your its their this that these those".split())
# What follows "called" or "named" is a name ("a folder called reports/2024").
_NAMED = re.compile(r"(?i)\b(?:called|named|titled)\s+(?!['\"`])(\S+)")
# A participle right after a noun says which thing ("approve the plan waiting for me": the plan
# to approve is the waiting one), not what to do: a reduced relative clause, weighed as a literal.
_MODIFIER = re.compile(
    rf"(?i)\b(?:{'|'.join(sorted(_DETERMINERS | {'every', 'each', 'all'}))})\s+[a-z]{{2,30}}\s+([a-z]{{2,30}}ing)\b"
)
# A purpose clause says why, not what: in "take a snapshot so I can click things" the task is
# the snapshot. It runs to the end of its sentence.
_PURPOSE = re.compile(r"(?i)\b(?:so(?: that)? (?:i|we|you|it|they) (?:can|could|may|will)|in order to)\b[^.;!?,]*")
# What a verb of knowing or saying reports is content, not the task: in "remember that the user
# prefers dark mode" the task is to remember a fact; "tell the team that the deploy is done" sends
# a message. The content counts as that type of thing, as a typed thing does. Only right after
# the verb (after its addressee for tell, notify …): "the file that I uploaded" is a relative
# clause and stays. Not after "report" or "confirm": what "report that my step failed" reports
# says which tool it needs.
_CONTENT = (
    (re.compile(r"(?i)\b(?:remember|memori[sz]e|note|record|learn|assert|write down)\s+that\s+([^.;!?]{1,400})"), ("fact",)),
    (re.compile(
        r"(?i)\b(?:(?:announce|post|tweet)\s+that|"
        r"(?:tell|notify|inform|remind|warn)\s+(?:\S+\s+){1,3}?that)\s+([^.;!?]{1,400})"
    ), ("message",)),
)


class Span(NamedTuple):
    """A literal of a query: a stretch that names something or says why, not what to do."""

    start: int
    end: int
    words: tuple[str, ...]  # the type of a typed thing or of content ("file", "fact"); empty for the rest
    kind: str  # thing | quote | name | purpose | content | modifier

Phrase = tuple[str, ...]  # stems, in order


def _stems(text: str) -> Phrase:
    return tuple(stem(w) for w in split_identifier(text))


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


_BE = frozenset("is are was were be been being get got gets".split())


def _what_as_which(raw: Sequence[str], words: Phrase) -> Phrase:
    """``words`` with "what" read as "which" where it asks for things in the plural: "what
    files are in …" lists them, as "which files" does ("what is", "what does" do not)."""
    out = list(words)
    for pos, word in enumerate(raw[:-1]):
        nxt = raw[pos + 1]
        if word == "what" and nxt not in STOPWORDS and is_plural(nxt):
            out[pos] = "which"
    return tuple(out)


def _noun(raw: Sequence[str], pos: int) -> bool:
    return pos > 0 and raw[pos - 1] in _DETERMINERS


def _passive(raw: Sequence[str], pos: int) -> bool:
    """The word at ``pos`` is a participle after a form of "be" ("was it created", "is
    deleted"): the query describes a state, the verb is not what it asks for."""
    return raw[pos].endswith(("ed", "en")) and not _BE.isdisjoint(raw[max(pos - 2, 0) : pos])


@dataclass(frozen=True)
class Group:
    """One concept: its phrases as stem sequences and, for verbs, the canonical action."""

    phrases: tuple[Phrase, ...]
    action: str = ""
    governs: bool = False  # its action is about other actions ("block deletes"): see ``expand``
    gloss: str = ""  # what a query led by this group asks for, told to the encoder ("policy rule")

    @property
    def terms(self) -> frozenset[str]:
        """Every content stem of the group (stop words of a phrase carry nothing for BM25)."""
        stop = _stop_stems()
        return frozenset(w for p in self.phrases for w in p if w not in stop)


@cache
def _stop_stems() -> frozenset[str]:
    return frozenset(stem(w) for w in STOPWORDS)


@dataclass(frozen=True)
class Entity:
    """A shape of thing a query may name (a file name, an IP address) and the words for it."""

    pattern: re.Pattern[str]
    words: tuple[str, ...]


class Lexicon:
    def __init__(self, groups: Sequence[Group], entities: Sequence[Entity] = ()) -> None:
        self.groups = tuple(groups)
        self.entities = tuple(entities)
        self._terms = tuple(g.terms for g in self.groups)
        # An action's own words (its groups that govern nothing): "block X" is "create a rule
        # about X", so a governing group brings them too.
        self._action_terms: dict[str, frozenset[str]] = {}
        for g, terms in zip(self.groups, self._terms, strict=True):
            if g.action and not g.governs:
                self._action_terms[g.action] = self._action_terms.get(g.action, frozenset()) | terms
        index: dict[str, list[tuple[Phrase, int]]] = {}
        for gi, group in enumerate(self.groups):
            for phrase in group.phrases:
                index.setdefault(phrase[0], []).append((phrase, gi))
        for entries in index.values():
            entries.sort(key=lambda e: -len(e[0]))  # the longest phrase at a position wins
        self._index = index
        # One query is read several times (terms, action, gloss, embedded text): scan it once.
        self._literals = lru_cache(maxsize=4096)(self._find_literals)
        self._intent_of = lru_cache(maxsize=4096)(self._intent)

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
            governs = raw.get("governs", False)
            if not isinstance(governs, bool):
                raise ConfigError(f"lexicon {path}: group {i}: 'governs' must be true or false")
            gloss = raw.get("gloss", "")
            if not isinstance(gloss, str):
                raise ConfigError(f"lexicon {path}: group {i}: 'gloss' must be a string")
            phrases = tuple(dict.fromkeys(p for p in (_stems(w) for w in words) if p))
            groups.append(Group(phrases, action, governs, gloss))
        return cls(groups, _entities(path, data.get("entity", [])))

    def _matches(self, words: Phrase) -> list[tuple[int, int]]:
        """(position, group) of the group phrases found in ``words``, in order of position. Of
        the action phrases at one position only the longest counts, with every group that has it:
        "set up" creates and does not also set, "keep an eye on" does not keep; "put", in three
        groups, brings all three. Groups without an action all count ("how much space")."""
        found: list[tuple[int, int]] = []
        for pos, word in enumerate(words):
            longest = 0
            for phrase, gi in self._index.get(word, ()):  # longest first
                if words[pos : pos + len(phrase)] != phrase:
                    continue
                if self.groups[gi].action:
                    if len(phrase) < longest:
                        continue
                    longest = len(phrase)
                found.append((pos, gi))
        return found

    def expand(self, query: str, terms: Mapping[str, float], weight: float) -> tuple[dict[str, float], frozenset[str]]:
        """``terms`` (the query's own, weight 1) plus the words of every group the query uses
        and of the types of thing it names (``entity_words``) at ``weight``, and the query's
        action(s): those of its first action word. When that word governs actions (block,
        allow), a later action word of the query is what the rule is about and weighs ``weight``."""
        out = dict(terms)
        actions: set[str] = set()
        first: int | None = None
        governs = False
        raw = split_identifier(self.intent(query))
        words = _what_as_which(raw, tuple(stem(w) for w in raw))
        for pos, gi in self._matches(words):
            group = self.groups[gi]
            if group.action and (_passive(raw, pos) or _noun(raw, pos)):
                continue  # "when was it created" asks about a state, "the build" names a thing
            if group.action and first is not None and pos != first:
                # A later verb is the object of the first ("block deletes"): not expanded.
                if governs and out.get(words[pos], 0.0) > weight:
                    out[words[pos]] = weight
                continue
            if group.action:
                first = pos
                actions.add(group.action)
                governs = governs or group.governs
            if weight > 0:
                for term in self._terms[gi] | (self._action_terms.get(group.action, frozenset()) if group.governs else frozenset()):
                    out.setdefault(term, weight)
        if "read" in actions and any(plural_stems(self.intent(query)).values()):
            actions.add("list")  # reading things in the plural is listing them ("show the alerts")
        if weight > 0:
            for word in self.entity_words(query):
                for term in _stems(word):
                    out.setdefault(term, weight)
        return out, frozenset(actions)

    def glosses(self, query: str) -> list[str]:
        """What the query's first action word means when its group says (``gloss``): "block
        deletes" asks for a policy rule, which MiniLM cannot tell from the words."""
        for _, gi in self._matches(_stems(self.intent(query))):
            group = self.groups[gi]
            if group.action:
                return [group.gloss] if group.gloss else []
        return []

    def literals(self, query: str) -> tuple[Span, ...]:
        """The spans of ``query`` that do not say what to do, in order, overlaps merged: typed
        things (``main.go``), quoted text, names after "called", purpose clauses."""
        return self._literals(query)

    def _find_literals(self, query: str) -> tuple[Span, ...]:
        spans = [Span(m.start(), m.end(), e.words, "thing") for e in self.entities for m in e.pattern.finditer(query)]
        spans += [Span(m.start(), m.end(), (), "quote") for m in _QUOTED.finditer(query)]
        spans += [Span(m.start(1), m.end(1), (), "name") for m in _NAMED.finditer(query)]
        spans += [Span(m.start(1), m.end(1), (), "modifier") for m in _MODIFIER.finditer(query)]
        spans += [Span(m.start(), m.end(), (), "purpose") for m in _PURPOSE.finditer(query)]
        spans += [Span(m.start(1), m.end(1), words, "content") for pattern, words in _CONTENT for m in pattern.finditer(query)]
        merged: list[Span] = []
        for span in sorted(spans):
            if merged and span.start < merged[-1].end:
                last = merged[-1]
                kind = "purpose" if "purpose" in (last.kind, span.kind) else last.kind
                words = last.words + tuple(w for w in span.words if w not in last.words)
                merged[-1] = Span(last.start, max(last.end, span.end), words, kind)
            else:
                merged.append(span)
        return tuple(merged)

    def _replaced(self, query: str, by: Callable[[Span, str], str]) -> str:
        parts, last = [], 0
        for span in self.literals(query):
            parts += [query[last : span.start], by(span, query[span.start : span.end])]
            last = span.end
        return "".join([*parts, query[last:]])

    def intent(self, query: str) -> str:
        """``query`` without its literals: what it asks to do."""
        return self._intent_of(query)

    def _intent(self, query: str) -> str:
        return self._replaced(query, lambda _span, _text: " ")

    def proper_names(self, query: str) -> list[str]:
        """The capitalised words of ``query``'s intent that do not open a sentence ("post in
        the Slack channel" → Slack): products, places, people."""
        out = []
        previous = ""
        for word in self.intent(query).split():
            if previous and previous[-1] not in ".!?:;" and word[:1].isupper():
                out.append(word.strip(".,;:!?()'\"`"))
            previous = word
        return out

    def embed_text(self, query: str) -> str:
        """What ``query`` is embedded as: each typed thing replaced by its type ("how big is
        video.mp4" → "how big is a file"), purpose clauses left out, quotes and names kept as
        written; then the gloss of its action."""

        def told(span: Span, text: str) -> str:
            if span.kind == "purpose":
                return ""
            if span.words:
                return f"{_article(span.words[0])} {' '.join(span.words)}"
            return text

        text = self._replaced(query, told).strip()
        glosses = self.glosses(query)
        return f"{text} ({', '.join(glosses)})" if glosses else text

    def entity_words(self, query: str) -> list[str]:
        """The words for the types of thing ``query`` names by shape (``main.go`` → file)."""
        out: list[str] = []
        for span in self.literals(query):  # the typed things, found once per query
            out.extend(w for w in span.words if w not in out)
        return out

    def related(self, stem: str) -> frozenset[str]:
        """Every stem that shares a group with the one-word ``stem`` (itself included)."""
        out = {stem}
        for phrase, gi in self._index.get(stem, ()):
            if len(phrase) == 1:
                out |= self._terms[gi]
        return frozenset(out)

    def related_in(self, query: str, own: Sequence[str]) -> dict[str, frozenset[str]]:
        """``related`` of each of the query's own stems, where a word inside a phrase the query
        uses ("business" in "business hours") is also related to that phrase's group."""
        out = {t: self.related(t) for t in own}
        words = _stems(query)
        for pos, gi in self._matches(words):
            for phrase, g in self._index.get(words[pos], ()):
                if g == gi and len(phrase) > 1 and words[pos : pos + len(phrase)] == phrase:
                    for w in phrase:
                        if w in out:
                            out[w] = out[w] | self._terms[gi]
        return out

    def tool_actions(self, name: str, description: str = "") -> frozenset[str]:
        """The canonical actions the words of a tool's name say (``get_file_info`` → read);
        for a name that says none (``port_forward``), those of its description's first word
        ("Forward a local port …"), which states what the tool does."""
        acts = frozenset(a for _, gi in self._matches(_stems(name)) if (a := self.groups[gi].action))
        if acts or not description.strip():
            return acts
        return self.tool_actions(description.split(None, 1)[0])


def _entities(path: Path, raw: object) -> list[Entity]:
    if not isinstance(raw, list):
        raise ConfigError(f"lexicon {path}: 'entity' must be a list of tables")
    out = []
    for i, item in enumerate(raw, 1):
        pattern = item.get("pattern") if isinstance(item, Mapping) else None
        words = item.get("words") if isinstance(item, Mapping) else None
        if not isinstance(pattern, str) or not isinstance(words, list) or not words or not all(
            isinstance(w, str) and w.strip() for w in words
        ):
            raise ConfigError(f"lexicon {path}: entity {i} needs 'pattern' (a string) and 'words' (non-empty strings)")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"lexicon {path}: entity {i}: bad pattern: {exc}") from None
        out.append(Entity(compiled, tuple(words)))
    return out


@cache
def default_lexicon() -> Lexicon:
    return Lexicon.load()
