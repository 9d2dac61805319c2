"""Two fake OpenAI-compatible providers (primary + backup, so each has its own breaker) and an
engine wired to them over real HTTP through litellm."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from servers.llm_cdn.cache import DiskBackend
from servers.llm_cdn.engine import Engine
from servers.llm_cdn.models_config import load_models
from servers.llm_cdn.providers import Providers
from tests.integration.llm_cdn.fake_openai import FakeState, fake_openai
from vsm_mcp.bus import MemoryBus
from vsm_mcp.config import Settings, load_settings


class Clock:
    """A settable clock: TTLs and breaker resets without sleeping."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def providers_up() -> Iterator[tuple[str, FakeState, str, FakeState]]:
    with fake_openai() as (base1, st1), fake_openai() as (base2, st2):
        yield base1, st1, base2, st2


@pytest.fixture
def fakes(providers_up: tuple[str, FakeState, str, FakeState]) -> tuple[str, FakeState, str, FakeState]:
    base1, st1, base2, st2 = providers_up
    for st in (st1, st2):
        st.mode.clear()
        st.calls.clear()
        st.latency_s = 0.0
        st.stall_s = 30.0
    return base1, st1, base2, st2


def models_json(base1: str, base2: str, **extra: Any) -> str:
    return json.dumps({"models": [
        {"name": "main", "target": "openai/main", "api_base": base1, "api_key": "k", "fallbacks": ["backup"], **extra},
        {"name": "backup", "target": "openai/backup", "api_base": base2, "api_key": "k"},
        {"name": "solo", "target": "openai/solo", "api_base": base1, "api_key": "k", "ttl_s": 10},
        {"name": "emb", "target": "openai/emb", "api_base": base1, "api_key": "k", "kind": "embedding"},
        {"name": "down", "target": "openai/down", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"},
    ]})


def make_settings(fakes: tuple[str, FakeState, str, FakeState], **overrides: Any) -> Settings:
    base1, _, base2, _ = fakes
    opts: dict[str, Any] = {"llm_models": models_json(base1, base2), "llm_retries": 1, "llm_timeout_s": 5.0,
                            "llm_breaker_threshold": 2, "llm_breaker_reset_s": 30.0}
    opts.update(overrides)
    return load_settings(**opts)


def make_engine(settings: Settings, home: Path, clock: Clock, bus: MemoryBus | None = None) -> Engine:
    providers = Providers(load_models(settings.llm_models), settings, clock=clock)
    backend = DiskBackend(home / "llm", settings.llm_cache_max_bytes, clock=clock)
    return Engine(settings, bus or MemoryBus(), backend, providers, clock=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def engine(fakes: tuple[str, FakeState, str, FakeState], tmp_path: Path, clock: Clock) -> AsyncIterator[Engine]:
    eng = make_engine(make_settings(fakes), tmp_path, clock)
    yield eng
    await eng.aclose()


# litellm's streaming path builds a pydantic model over a TypedDict with ReadOnly items, and
# pydantic warns about it once per process; under filterwarnings=error that warning would become
# an exception inside litellm. It says nothing about our code.
LITELLM_READONLY_WARNING = "ignore:Item .* is using the `ReadOnly` qualifier"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "llm_cdn" in str(item.path):
            item.add_marker(pytest.mark.filterwarnings(LITELLM_READONLY_WARNING))
