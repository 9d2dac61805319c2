"""Key phrases of a short text without any model (RAKE: Rose et al., 2010).

Candidate phrases are the runs of words between stop words and punctuation; a word scores its
degree (co-occurrences inside candidates) over its frequency, a phrase the sum of its words.
Used by the relay when no LLM is configured, and exposed as the tool ``relay_key_phrases``.
"""

from __future__ import annotations

import re

STOP = frozenset("""a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
off on once only or other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves said says also new one two""".split())
_SPLIT = re.compile(r"[.,;:!?()\[\]{}\"'\n\t|/\\]+|\s[-–—]\s")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9+#&'-]*")


def key_phrases(text: str, limit: int = 5) -> list[str]:
    """Up to ``limit`` phrases, best first (ties: first seen); lower-cased."""
    candidates: list[list[str]] = []
    for chunk in _SPLIT.split(text):
        run: list[str] = []
        for word in _WORD.findall(chunk.lower()):
            if word in STOP or word.isdigit():
                if run:
                    candidates.append(run)
                run = []
            else:
                run.append(word)
        if run:
            candidates.append(run)
    freq: dict[str, int] = {}
    degree: dict[str, int] = {}
    for phrase in candidates:
        for w in phrase:
            freq[w] = freq.get(w, 0) + 1
            degree[w] = degree.get(w, 0) + len(phrase)
    scored: dict[str, float] = {}
    for phrase in candidates:
        key = " ".join(phrase)
        if key not in scored:
            scored[key] = sum(degree[w] / freq[w] for w in phrase)
    order = sorted(scored, key=lambda k: -scored[k])  # sorted is stable: ties keep first-seen order
    return order[: max(0, limit)]
