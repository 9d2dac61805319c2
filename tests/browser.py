"""Debian's chromium driven by Playwright, for the browser tests (a downloaded browser is never
used), and the checks each page gets: no JavaScript error, no serious or critical axe-core
violation, a screenshot under ``test-artifacts/`` (``VSM_TEST_ARTIFACTS`` overrides the folder)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
# Headless in a container, with nothing reaching out (updates, sync, QUIC probes) during a test.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian chromium not installed (.ci/run installs it)")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium browser (Playwright's ``Browser``), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def page_errors(page: Any) -> list[str]:
    """The list the page's uncaught JavaScript errors are appended to from now on."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def artifacts(folder: str) -> Path:
    return Path(os.environ.get("VSM_TEST_ARTIFACTS", ROOT / "test-artifacts")) / folder


def screenshot(page: Any, folder: str, name: str) -> None:
    out = artifacts(folder)
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def axe_violations(page: Any) -> list[tuple[str, str, list[Any]]]:
    """axe-core's serious and critical violations on the page (the page must allow the injected
    script: a context with ``bypass_csp=True``)."""
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in result["violations"] if v["impact"] in ("serious", "critical")]
