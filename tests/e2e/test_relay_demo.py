"""examples/relay-demo end to end, as its README runs it: the Astro site built with npm, served as
static files on 127.0.0.1, a real `vsm-mcp serve` (VSM_CORS_ORIGINS = the page's origin,
VSM_FETCH_ALLOW = the source), the demo's own live source (examples/relay-demo/source.py, a WebSocket
here) fed line by line on its standard input, a scripted OpenAI-compatible model server for the
summaries (the model is the one third-party part, faked over its HTTP API), and the page in Debian's
chromium (Playwright).

Each headline is pushed only after the previous one is on the page, so the page must show events
as they arrive (not at the end). Screenshot: ``test-artifacts/relay-demo/live.png``.
The npm install is cached in examples/relay-demo/node_modules (gitignored; `make setup` fills it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import procs
from tests.browser import AXE, axe_violations, needs_chromium, page_errors, screenshot
from tests.e2e.gateway import Gateway
from tests.http_thread import serve_directory
from tests.ports import free_port
from tests.scripted_model import Script, scripted_model

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "examples" / "relay-demo"
NPM = shutil.which("npm")
HEADLINES = [
    {"title": "European Central Bank holds interest rates", "text": "Inflation in the euro area eased."},
    {"title": "Heavy snowfall closes Alpine passes", "text": "Road authorities warn drivers."},
    "Solar subsidies extended for small businesses",
]

pytestmark = [
    pytest.mark.skipif(NPM is None, reason="npm not installed: the Astro demo cannot be built"),
    needs_chromium,
    pytest.mark.timeout(600),  # a cold npm install + build + a router start-up on a loaded 2-core machine
]



def _npm(*args: str, env: dict[str, str] | None = None) -> None:
    out = subprocess.run([NPM or "npm", *args], cwd=SITE, capture_output=True, text=True, timeout=540,
                         env={**os.environ, "ASTRO_TELEMETRY_DISABLED": "1", **(env or {})})
    assert out.returncode == 0, f"npm {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The built site, served on 127.0.0.1; its base URL."""
    installed = SITE / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (SITE / "package-lock.json").stat().st_mtime:
        _npm("ci", "--no-audit", "--no-fund")  # once: later runs reuse node_modules
    dist = tmp_path_factory.mktemp("relay-demo-dist")
    # PUBLIC_VSM_STREAM is baked in at build time; the router comes from the query string below
    _npm("run", "build", "--", "--outDir", str(dist), env={"PUBLIC_VSM_STREAM": "news"})
    assert (dist / "index.html").exists()

    with serve_directory(dist) as url:
        yield url


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """examples/relay-demo/source.py, fed through its standard input."""
    port, log = free_port(), tmp_path_factory.mktemp("source") / "source.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(SITE / "source.py"), "--port", str(port)], stdin=subprocess.PIPE,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        procs.wait_listening(port, proc, log, timeout=120)
        yield proc, port
    finally:
        if proc.stdin:
            proc.stdin.close()
        procs.stop(proc)


def summarize(_script: Script, body: dict[str, Any]) -> dict[str, Any]:
    """The scripted model's answer to the relay's prompt: the JSON the prompt asks for, made from
    the item's first line and its capitalised names."""
    text = body["messages"][-1]["content"].split("\n\n", 1)[-1]
    entities = list(dict.fromkeys(re.findall(r"[A-Z][a-z]+(?: [A-Z][a-z]+)*", text)))
    return {"role": "assistant", "content": json.dumps({"summary": f"In short: {text.splitlines()[0]}.",
                                                        "entities": entities})}


@pytest.fixture(scope="module")
def model() -> Iterator[str]:
    with scripted_model("", {}, respond=summarize) as (base, _):
        yield base


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory, site: str, source: tuple[subprocess.Popen[bytes], int],
           model: str) -> Iterator[tuple[Gateway, str]]:
    """`vsm-mcp serve` with the two settings the README asks for."""
    gw = Gateway(tmp_path_factory.mktemp("router"), model, timeout=180,
                 VSM_CORS_ORIGINS=site, VSM_FETCH_ALLOW=f"127.0.0.1:{source[1]}",
                 VSM_ALLOW_ANONYMOUS="false")  # so the page's key is what lets it in
    gw.cli("migrate")
    writer = gw.cli("keys", "create", "--tenant", "default", "--scopes", "events:write,tools:call,llm").splitlines()[-1]
    reader = gw.cli("keys", "create", "--tenant", "default", "--scopes", "events:read").splitlines()[-1]
    gw.start()
    try:
        # What the README's curl does: start relaying the demo source's WebSocket as stream "news"
        # (here with summaries from the configured model).
        r = httpx.post(f"{gw.url}/v1/tools/relay__relay_start/call", timeout=60,
                       headers={"authorization": f"Bearer {writer.strip()}"},
                       json={"arguments": {"stream": "news", "url": f"ws://127.0.0.1:{source[1]}/ws",
                                           "summarize": True, "model": "scripted"}})
        assert r.status_code == 200 and not r.json().get("isError"), r.text
        yield gw, reader.strip()
    finally:
        gw.stop()


def _push(proc: subprocess.Popen[bytes], item: dict[str, str] | str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(((item if isinstance(item, str) else json.dumps(item)) + "\n").encode())
    proc.stdin.flush()


def test_the_page_shows_relayed_events_as_they_arrive(
    site: str, router: tuple[Gateway, str], source: tuple[subprocess.Popen[bytes], int], browser: Any,
) -> None:
    gw, key = router
    context = browser.new_context(viewport={"width": 1000, "height": 900}, bypass_csp=True)
    page = context.new_page()
    errors = page_errors(page)
    outside: list[str] = []  # every request must stay on this machine (no CDN fonts or scripts)
    page.on("request", lambda req: None if req.url.startswith(("http://127.0.0.1:", "data:")) else outside.append(req.url))

    page.goto(f"{site}/?router={gw.url}")
    assert page.inner_text("#stream-label") == "news"  # PUBLIC_VSM_STREAM, baked in by the build
    # Without a key this router refuses the page; the page says so (CORS lets it read the error).
    page.wait_for_selector("#status[data-state='failed']")
    assert "401" in page.inner_text("#status-text") and page.is_visible("#key")

    page.fill("#key", key)
    page.click("#connect button[type='submit']")
    page.wait_for_selector("#status[data-state='live']")
    assert f"?router={gw.url.replace(':', '%3A').replace('/', '%2F')}&stream=news" in page.url  # shareable, no key

    for n, item in enumerate(HEADLINES, 1):
        title = item if isinstance(item, str) else item["title"]
        _push(source[0], item)
        page.wait_for_function("([n, title]) => document.querySelectorAll('#feed li.item').length === n"
                               " && document.querySelector('#feed li.item h3').textContent === title",
                               arg=[n, title], timeout=60_000)
        assert page.locator("#count").inner_text() == str(n)

    cards = page.locator("#feed li.item")
    newest = cards.nth(0)
    assert newest.locator("h3").inner_text() == HEADLINES[2]
    assert "solar subsidies extended" in newest.locator(".phrases ul").inner_text().lower()
    oldest = cards.nth(2)
    assert oldest.locator(".body").inner_text() == "Inflation in the euro area eased."
    assert oldest.locator(".summary").inner_text() == "In short: European Central Bank holds interest rates."
    assert oldest.locator(".entities li").all_inner_texts() == ["European Central Bank", "Inflation"]
    assert "european central bank holds interest rates" in oldest.locator(".phrases ul").inner_text().lower()
    assert oldest.locator("time").get_attribute("datetime")
    assert "source #1" in oldest.locator(".meta").inner_text() and "processed in" in oldest.locator(".meta").inner_text()
    assert page.is_hidden("#empty")

    page.wait_for_function("() => document.getAnimations().length === 0")  # the arrival fade has settled
    screenshot(page, "relay-demo", "live")
    if AXE.exists():  # the accessibility engine the console tests use (make setup installs it)
        bad = axe_violations(page)
        assert bad == [], bad
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert outside == [], f"requests that left the machine: {outside}"
