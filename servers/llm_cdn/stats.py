"""Counters of the LLM-CDN: hits by kind, misses, upstream calls, tokens saved, latency."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Stats:
    """In-process counters; ``snapshot()`` is what ``llm_cache_stats`` returns."""

    def __init__(self, window: int = 2048) -> None:
        self.lookups: Counter[str] = Counter()  # hit | semantic | miss | shared | bypass
        self.tokens_saved = 0
        self.stores = 0
        self.purged = 0
        self.hit_ms: deque[float] = deque(maxlen=window)
        self.miss_ms: deque[float] = deque(maxlen=window)

    def record(self, kind: str, ms: float, tokens: int = 0) -> None:
        self.lookups[kind] += 1
        if kind in ("hit", "semantic"):
            self.tokens_saved += tokens
            self.hit_ms.append(ms)
        elif kind in ("miss", "bypass"):
            self.miss_ms.append(ms)
        elif kind == "shared":
            self.tokens_saved += tokens

    def snapshot(self) -> dict[str, Any]:
        hits = self.lookups["hit"] + self.lookups["semantic"]
        cacheable = hits + self.lookups["miss"] + self.lookups["shared"]
        return {
            "hits": {"exact": self.lookups["hit"], "semantic": self.lookups["semantic"]},
            "misses": self.lookups["miss"],
            "shared": self.lookups["shared"],
            "bypass": self.lookups["bypass"],
            "hit_rate": round(hits / cacheable, 4) if cacheable else 0.0,
            "stores": self.stores,
            "purged": self.purged,
            "tokens_saved": self.tokens_saved,
            "latency_ms": {
                "hit_p50": round(_pct(list(self.hit_ms), 0.5), 3),
                "hit_p99": round(_pct(list(self.hit_ms), 0.99), 3),
                "miss_p50": round(_pct(list(self.miss_ms), 0.5), 3),
                "miss_p99": round(_pct(list(self.miss_ms), 0.99), 3),
            },
        }
