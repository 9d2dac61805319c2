"""`vsm-mcp serve` as `make run` starts it, in a process of its own on a free port, with a scripted
OpenAI-compatible model configured as the model "scripted": the gateway the browser and OpenCode
tests drive. ``settings`` are more VSM_* variables for the tests that need them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import procs
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


class Gateway:
    def __init__(self, home: Path, model_url: str, *, timeout: float = 120, **settings: str) -> None:
        self.home, self.port, self.timeout = home, free_port(), timeout  # for each CLI call and the start-up
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VSM_") or k.startswith("VSM_TEST_")},
            "PYTHONPATH": str(ROOT), "VSM_HOME": str(home / ".vsm"), "VSM_PORT": str(self.port),
            "VSM_EMBEDDER": "hash", "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "SCRIPTED_KEY": "sk-test",
            "VSM_LLM_MODELS": json.dumps({"models": [{"name": "scripted", "target": "openai/scripted",
                                                       "api_base": model_url, "api_key_env": "SCRIPTED_KEY"}]}),
            **settings,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def cli_argv() -> list[str]:
        return [sys.executable, "-m", "vsm_mcp.cli"]

    def cli(self, *args: str) -> str:
        out = subprocess.run([*self.cli_argv(), *args], env=self.env, cwd=self.home,
                             capture_output=True, text=True, timeout=self.timeout)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def start(self) -> None:
        log = self.home / "serve.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([*self.cli_argv(), "serve"], env=self.env, cwd=self.home,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        procs.wait_ready_sync(self.url, self.proc, log, timeout=self.timeout)

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
