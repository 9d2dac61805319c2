"""Unknown VSM_* variables get one warning line with the closest setting (VSM_PROT was silently ignored)."""

from __future__ import annotations

from vsm_mcp.config import Settings
from vsm_mcp.env_check import unknown_variables


def test_misspelt_setting_names_the_closest() -> None:
    env = {"VSM_PROT": "9000", "VSM_PORT": "1", "VSM_API_KEY": "k", "VSM_TEST_PG_HOST": "h", "PATH": "/bin",
           "VSM_ZZZZZZZZZZZ": "1"}
    lines = unknown_variables(Settings.model_fields, env)
    assert lines == [
        "warning: VSM_PROT is not a vsm-mcp setting and is ignored; did you mean VSM_PORT?",
        "warning: VSM_ZZZZZZZZZZZ is not a vsm-mcp setting and is ignored; see .env.example for the settings",
    ]


def test_every_setting_is_known() -> None:
    env = {f"VSM_{name.upper()}": "x" for name in Settings.model_fields}
    assert unknown_variables(Settings.model_fields, env) == []
