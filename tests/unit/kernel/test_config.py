from __future__ import annotations

import re
from pathlib import Path

import pytest

from vsm_mcp.config import Settings, default_database_url, load_settings, sqlite_file
from vsm_mcp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def test_every_setting_is_documented_in_env_example() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^VSM_([A-Z0-9_]+)=", text, flags=re.M))
    missing = {f"VSM_{n.upper()}" for n in Settings.model_fields} - {f"VSM_{d}" for d in documented}
    assert not missing, f"add these to .env.example with one line of help: {sorted(missing)}"


def test_defaults_are_embedded() -> None:
    s = load_settings()
    assert s.database_url.startswith("sqlite+aiosqlite:///")
    assert s.bus_url == "memory://"
    assert (s.host, s.port) == ("127.0.0.1", 8765)


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("VSM_DATABASE_URL", "mysql://x", "VSM_DATABASE_URL"),
        ("VSM_DATABASE_URL", "postgresql+asyncpg:///nohost", "needs a host"),
        ("VSM_BUS_URL", "kafka://x", "VSM_BUS_URL"),
        ("VSM_PORT", "70000", "VSM_PORT"),
        ("VSM_PORT", "abc", "VSM_PORT"),
    ],
)
def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert needle in info.value.message
    assert "\n" not in info.value.message


def test_the_sqlite_file_of_a_url() -> None:
    assert sqlite_file("sqlite+aiosqlite:///.vsm/vsm.db") == ".vsm/vsm.db"
    assert sqlite_file("sqlite:////abs/dbos.sqlite") == "/abs/dbos.sqlite"
    assert sqlite_file("sqlite+aiosqlite:///:memory:") == ""
    assert sqlite_file("postgresql+asyncpg://vsm@127.0.0.1:5432/test") == ""
    assert load_settings(home="/data/.vsm").database_url == default_database_url(Path("/data/.vsm"))
