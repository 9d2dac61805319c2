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

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port
from tests.scripted_model import Script, scripted_model

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "examples" / "relay-demo"
NPM = shutil.which("npm")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("VSM_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "relay-demo"
HEADLINES = [
    {"title": "European Central Bank holds interest rates", "text": "Inflation in the euro area eased."},
    {"title": "Heavy snowfall closes Alpine passes", "text": "Road authorities warn drivers."},
    "Solar subsidies extended for small businesses",
]

pytestmark = [
    pytest.mark.skipif(NPM is None, reason="npm not installed: the Astro demo cannot be built"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (.ci/run installs it)"),
    pytest.mark.timeout(600),  # a cold npm install + build + a router start-up on a loaded 2-core machine
]



def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}: " + log.read_text()[-3000:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(dist)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """examples/relay-demo/source.py, fed through its standard input."""
    port, log = free_port(), tmp_path_factory.mktemp("source") / "source.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(SITE / "source.py"), "--port", str(port)], stdin=subprocess.PIPE,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_listening(port, proc, log)
        yield proc, port
    finally:
        if proc.stdin:
            proc.stdin.close()
        _stop(proc)


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


class Router:
    """`vsm-mcp serve` as `make run` starts it, plus the two settings the README asks for."""

    def __init__(self, home: Path, page_origin: str, source_port: int, model_url: str) -> None:
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VSM_") or k.startswith("VSM_TEST_")},
            "PYTHONPATH": str(ROOT), "VSM_HOME": str(home / ".vsm"), "VSM_PORT": str(self.port),
            "VSM_EMBEDDER": "hash", "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "VSM_CORS_ORIGINS": page_origin, "VSM_FETCH_ALLOW": f"127.0.0.1:{source_port}",
            "VSM_ALLOW_ANONYMOUS": "false",  # so the page's key is what lets it in
            "SCRIPTED_KEY": "sk-test",
            "VSM_LLM_MODELS": json.dumps({"models": [{"name": "scripted", "target": "openai/scripted",
                                                       "api_base": model_url, "api_key_env": "SCRIPTED_KEY"}]}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "vsm_mcp.cli", *args], env=self.env, cwd=self.home,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def start(self) -> None:
        log = self.home / "serve.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "vsm_mcp.cli", "serve"], env=self.env, cwd=self.home,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("router not ready: " + log.read_text()[-3000:])


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory, site: str, source: tuple[subprocess.Popen[bytes], int],
           model: str) -> Iterator[tuple[Router, str]]:
    gw = Router(tmp_path_factory.mktemp("router"), site, source[1], model)
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
        if gw.proc is not None:
            _stop(gw.proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ])
        try:
            yield b
        finally:
            b.close()


def _push(proc: subprocess.Popen[bytes], item: dict[str, str] | str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(((item if isinstance(item, str) else json.dumps(item)) + "\n").encode())
    proc.stdin.flush()


def test_the_page_shows_relayed_events_as_they_arrive(
    site: str, router: tuple[Router, str], source: tuple[subprocess.Popen[bytes], int], browser: Any,
) -> None:
    gw, key = router
    context = browser.new_context(viewport={"width": 1000, "height": 900}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live.png"), full_page=True)
    if AXE.exists():  # the accessibility engine the console tests use (make setup installs it)
        page.add_script_tag(content=AXE.read_text())
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        bad = [(v["id"], v["impact"], [x["target"] for x in v["nodes"]][:3])
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert bad == [], bad
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert outside == [], f"requests that left the machine: {outside}"
