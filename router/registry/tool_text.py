"""The text tool search sees: identifier splitting, tokenising, stemming, and the per-field
documents a tool contributes to BM25 and to its embedding.

Kept apart from the index so both the live registry and the retrieval benchmark use exactly
the same text preparation (router/registry/index.py, vsm_mcp/cli/bench_retrieval.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

# camelCase / PascalCase / ACRONYMWord / digits boundaries inside one identifier.
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z]{2,})|[A-Z]+s(?![a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# Any script's letters and digits, so a German, Cyrillic or Chinese description is not reduced to
# its ASCII fragments; ASCII words get the acronym-aware camelCase split, others a simple one.
_WORDISH = re.compile(r"[^\W_]+")
# Scripts written without spaces: a run is indexed as overlapping character bigrams.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")

# Function words that carry no intent in a tool query or description. "on", "off", "up" and
# "out" are not among them: tool names use them as the action ("maintenance_on", "scale_up").
STOPWORDS = frozenset(
    """a about above after all also am an and any are as at be been being but by can could did do does
    doing for from had has have having he her here hers him his how i if in into is it its itself just
    me my myself no nor not of once only or other our ours over own please same she should
    so some such than that the their theirs them then there these they this those through to too under
    until very was we were what when where which while who whom why will with would you your yours
    yourself want need let lets using use via e g eg ie etc
    inside outside within without during between before below beyond among across along around
    behind beside besides toward towards upon onto""".split()
)


# "what's", "page's", "we'll": the ending is a word of its own (a stop word: "what is", "we
# will"); split off as it was, it became a term "s" of every query that said "what's".
_CONTRACTION = re.compile(r"(?i)(?<=[a-z])(n['’]t|['’](?:s|ll|re|ve|d|m))\b")
_EXPANDED = {"n't": " not", "'s": " is", "'ll": " will", "'re": " are", "'ve": " have", "'d": " would", "'m": " am"}


def _uncontract(text: str) -> str:
    if "'" not in text and "’" not in text:
        return text
    return _CONTRACTION.sub(lambda m: _EXPANDED[m.group(1).lower().replace("’", "'")], text)


def _fold(text: str) -> str:
    """Accents dropped (``résumé`` → ``resume``) so accented and plain spellings meet."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _split_case(word: str) -> list[str]:
    """camelCase and letter/digit boundaries for any script (``ÜberSicht2`` → über, sicht, 2)."""
    parts: list[str] = []
    start = 0
    for i in range(1, len(word)):
        prev, cur = word[i - 1], word[i]
        if (prev.islower() and cur.isupper()) or (prev.isdigit() != cur.isdigit()):
            parts.append(word[start:i])
            start = i
    parts.append(word[start:])
    out = ("".join(c for c in p.lower() if c.isalnum()) for p in parts)
    return [w for w in out if w]


def _other_script(chunk: str) -> list[str]:
    out: list[str] = []
    for part in _CJK.split(chunk):
        out.extend(_split_case(part))
    for cjk in _CJK.findall(chunk):
        out.extend([cjk] if len(cjk) == 1 else [cjk[i : i + 2] for i in range(len(cjk) - 1)])
    return out


def split_identifier(name: str) -> list[str]:
    """``getUserIDs`` → ``[get, user, ids]``; ``HTTPServer`` → ``[http, server]``; ``list_dir-v2`` → ``[list, dir, v, 2]`` (lower-cased).

    Non-ASCII words are accent-folded and kept whole; Chinese/Japanese/Korean runs become bigrams.
    """
    words: list[str] = []
    for chunk in _WORDISH.findall(_uncontract(_fold(name))):
        if chunk.isascii():
            words.extend(part.lower() for part in _CAMEL.findall(chunk))
        else:
            words.extend(_other_script(chunk))
    return words


# Words whose "-ed" belongs to the root (the -eed words are caught by rule): without this
# "embed" stemmed to "emb" while "embedding" and "embedded" stemmed to "embed".
_ED_ROOTS = frozenset({"embed", "shred", "imbed"})


def _singular(w: str) -> str:
    """``w`` without a plural ending (``directories`` → directory, ``boxes`` → box); the stemmer's
    first step, and what says whether a word is plural (``plural_stems``)."""
    if len(w) <= 3 or not w.isalpha():
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "shes", "ches", "xes", "zes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light suffix stemmer: conflates plural, -ing, -ed, -ion and a final -e.

    Light on purpose: it must map "creating", "created", "creation", "create" together, but an
    aggressive stemmer merges unrelated tool words ("server"/"serve", "user"/"use").
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    w = _singular(word)
    for suffix in ("ing", "ed"):
        if suffix == "ed" and (w.endswith("eed") or w in _ED_ROOTS):
            break  # "speed", "proceed", "embed": the -ed is the root's, not a past tense
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
                w = w[:-1]  # running → run
            break
    if w.endswith(("tion", "sion")) and len(w) > 5:
        w = w[:-3]
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def tokenize(text: str) -> list[str]:
    """Words of ``text`` (identifiers split, lower-cased, stopwords dropped, stemmed)."""
    return [stem(w) for w in split_identifier(text) if w not in STOPWORDS]


def is_plural(word: str) -> bool:
    """``word`` (lower case) ends as a plural does ("files", "directories")."""
    return _singular(word) != word


def plural_stems(text: str) -> dict[str, bool]:
    """Each content stem of ``text`` and whether the text says it in the plural ("alerts")."""
    out: dict[str, bool] = {}
    for w in split_identifier(text):
        if w in STOPWORDS:
            continue
        s = stem(w)
        out[s] = out.get(s, False) or is_plural(w)
    return out


def iter_params(schema: Mapping[str, Any], prefix: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """(parameter path, description) for each property of a JSON schema, nested objects included."""
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(props, Mapping) or depth > 3:
        return
    for name, sub in props.items():
        if not isinstance(sub, Mapping):
            continue
        desc = sub.get("description")
        yield f"{prefix}{name}", desc if isinstance(desc, str) else ""
        yield from iter_params(sub, f"{prefix}{name}.", depth + 1)
        items = sub.get("items")
        if isinstance(items, Mapping):
            yield from iter_params(items, f"{prefix}{name}.", depth + 1)


def first_sentences(text: str, limit: int) -> str:
    """Leading sentences of ``text`` up to about ``limit`` characters (never cuts the first one)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    out = ""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if out and len(out) + len(sentence) > limit:
            break
        out = f"{out} {sentence}".strip()
    return out[: max(limit, 1) * 2]


def embedding_text(
    name: str,
    title: str,
    description: str,
    schema: Mapping[str, Any],
    *,
    server: str = "",
    server_text: str = "",
    desc_chars: int = 600,
) -> str:
    """The one string a tool is embedded as: server, readable name, title, description and parameters.

    The server id leads ("desktop commander: read file. …") so a query naming the product meets
    it on the embedding side too, and same-named tools of two servers get different vectors;
    leave-servers-out CV: MRR up in 4-5 of 5 held-out folds (benchmarks/RESULTS.md). When the
    upstream describes itself (``server_text``: its initialize instructions), the first sentence
    of that follows the id in parentheses — "llm (LLM gateway: cached completions …)" is what
    lets "ask a language model" meet a tool called ``llm_complete``.
    """
    text = _embedding_body(name, title, description, schema, desc_chars)
    prefix = " ".join(split_identifier(server))
    about = first_sentences(server_text, SERVER_TEXT_CHARS) if server_text else ""
    if about:
        prefix = f"{prefix} ({about.rstrip('. ')})" if prefix else about.rstrip(". ")
    return f"{prefix}: {text}" if prefix else text


# How much of an upstream's own description is embedded with each of its tools: one sentence
# says what the server is for; its whole instructions (often pages) would drown the tool.
SERVER_TEXT_CHARS = 160


def _embedding_body(name: str, title: str, description: str, schema: Mapping[str, Any], desc_chars: int) -> str:
    head = " ".join(split_identifier(name))
    parts = [head]
    if title and title.lower() != head:
        parts.append(title)
    parts.append(first_sentences(description, desc_chars))
    params = [" ".join(split_identifier(p.rsplit(".", 1)[-1])) for p, _ in iter_params(schema)]
    if params:
        parts.append("Parameters: " + ", ".join(dict.fromkeys(params)) + ".")
    return ". ".join(p.rstrip(". ") for p in parts if p) .strip()


def field_tokens(
    name: str,
    title: str,
    description: str,
    schema: Mapping[str, Any],
    server: str = "",
    *,
    server_text: str = "",
    tokens: Callable[[str], list[str]] = tokenize,
) -> dict[str, list[str]]:
    """Tokens per BM25 field: ``name``, ``title``, ``description``, ``params``, ``server``, ``upstream``.

    The server id is a field because users name the product ("on Heroku", "in Neon");
    ``upstream`` is the server's own description and instructions (from its initialize answer).
    """
    params: list[str] = []
    for path, desc in iter_params(schema):
        params.extend(tokens(path))
        params.extend(tokens(desc))
    return {
        "name": tokens(name),
        "title": tokens(title),
        "description": tokens(description),
        "params": params,
        "server": tokens(server),
        "upstream": tokens(server_text),
    }
