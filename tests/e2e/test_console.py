"""The web console in a real browser (Debian's chromium, driven by Playwright) against a real
`vsm-mcp serve` process and a scripted OpenAI-compatible model server.

Screenshots of every page go to ``test-artifacts/console/`` (``VSM_TEST_ARTIFACTS`` overrides the
folder); the README links them. An axe-core accessibility scan runs on every page: no serious or
critical violation may remain.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import AXE, axe_violations, needs_chromium, page_errors, screenshot
from tests.e2e.gateway import Gateway
from tests.scripted_model import Script, scripted_model

pytestmark = [needs_chromium, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str, Script]]:
    home = tmp_path_factory.mktemp("console")
    with scripted_model("call_tool", {"name": "storage__bucket_create", "arguments": {"name": "chatbucket"}}) as (
        model_url, script,
    ):
        gw = Gateway(home, model_url)
        gw.cli("migrate")
        key = gw.cli("keys", "create", "--tenant", "default", "--scopes", "*").splitlines()[-1].strip()
        gw.start()
        try:
            yield gw, key, script
        finally:
            gw.stop()


@pytest.fixture
def page(stack: tuple[Gateway, str, Script], browser: Any) -> Iterator[Any]:
    gw, key, _ = stack
    context = browser.new_context(bypass_csp=True)  # so the test can inject axe-core; the page itself is unchanged
    pg = context.new_page()
    errors = page_errors(pg)
    pg.goto(f"{gw.url}/console")
    pg.fill("#api-key", key)
    pg.click("#key-form button")
    pg.wait_for_selector("#tool-list li")  # the first page lists the tools the key may call
    assert "failed" not in pg.inner_text("#status")
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _shot(pg: Any, name: str) -> None:
    screenshot(pg, "console", name)


def _axe(pg: Any) -> None:
    if not AXE.exists():
        pytest.skip("axe-core not installed (make setup installs it under .tools)")
    bad = axe_violations(pg)
    assert bad == [], bad


def test_console_redirects_and_serves_its_pages_with_a_strict_policy(stack: tuple[Gateway, str, Script]) -> None:
    gw, _, _ = stack
    r = httpx.get(f"{gw.url}/console", follow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/console/"
    r = httpx.get(f"{gw.url}/console/")
    assert r.status_code == 200 and "vsm-mcp console" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert httpx.get(f"{gw.url}/console/console.js").headers["content-type"].startswith(("text/javascript", "application/javascript"))


def test_search_as_you_type_fill_the_generated_form_and_call(page: Any) -> None:
    page.fill("#tool-q", "create a storage bucket")
    page.wait_for_selector("#tool-list li button:text('storage__bucket_create')")
    page.click("#tool-list li button:text('storage__bucket_create')")
    page.wait_for_selector("#tool-form input[name='name']")
    # The schema's required field is marked, and calling without it says so before any request.
    assert page.get_attribute("#tool-form input[name='name']", "aria-required") == "true"
    page.click("#tool-form button[type='submit']")
    page.wait_for_selector("#tool-result .error:text('name is required')")
    page.fill("#tool-form input[name='name']", "fromconsole")
    page.click("#tool-form button[type='submit']")
    page.wait_for_selector("#tool-result pre")
    assert "fromconsole" in page.inner_text("#tool-result")
    _shot(page, "tools")
    _axe(page)


SCHEMA = {
    "type": "object",
    "required": ["mode", "owner", "tags"],
    "$defs": {"Owner": {"type": "object", "required": ["name"],
                        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}},
    "properties": {
        "mode": {"enum": ["fast", "safe"], "description": "how to run"},
        "owner": {"$ref": "#/$defs/Owner"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        "dry": {"type": "boolean"},
        "extra": {"type": "object", "additionalProperties": True},
    },
}


def test_the_form_follows_the_schema_enums_nested_objects_arrays_and_optional_fields(page: Any) -> None:
    page.evaluate("""async (schema) => {
        const { buildForm } = await import('/console/schema_form.js');
        const form = document.createElement('form');
        form.id = 'probe';
        document.querySelector('main').append(form);
        buildForm(form, schema, (value, problem) => { window.__probe = { value, problem }; });
    }""", SCHEMA)
    page.click("#probe button[type='submit']")
    assert page.evaluate("window.__probe.problem") == "name is required"  # owner.name; the enum has a value
    page.select_option("#probe select[name='mode']", label="safe")
    page.fill("#probe input[name='name']", "ada")
    page.fill("#probe input[name='age']", "36")
    page.click("#probe button:text('Add tags item')")
    page.click("#probe button:text('Add tags item')")
    page.fill("#probe input[name='tags[0]']", "a")
    page.fill("#probe input[name='tags[1]']", "b")
    page.fill("#probe input[name='limit']", "5")
    page.fill("#probe textarea[name='extra']", '{"k": [1, 2]}')
    page.click("#probe button[type='submit']")
    assert page.evaluate("window.__probe") == {"value": {
        "mode": "safe", "owner": {"name": "ada", "age": 36}, "tags": ["a", "b"], "limit": 5, "extra": {"k": [1, 2]},
    }, "problem": None}
    page.fill("#probe input[name='age']", "3.5")
    page.click("#probe button[type='submit']")
    assert page.evaluate("window.__probe.problem") == "age must be an integer"


def test_a_failing_call_shows_the_gateways_message(page: Any) -> None:
    page.fill("#tool-q", "create a storage bucket")
    page.click("#tool-list li button:text('storage__bucket_create')")
    page.fill("#tool-form input[name='name']", "Not A Valid Bucket Name!")
    page.click("#tool-form button[type='submit']")
    page.wait_for_selector("#tool-result .error")
    text = page.inner_text("#tool-result")
    assert "bucket" in text.lower() and "name" in text.lower()


def test_upstreams_page_lists_every_upstream_with_its_state(page: Any) -> None:
    page.goto(page.url.split("#")[0] + "#upstreams")
    page.wait_for_selector("#up-rows tr td:text('storage')")
    rows = page.inner_text("#up-rows")
    for server in ("storage", "search", "llm", "policy", "beliefs"):
        assert server in rows
    assert "ready" in rows
    _shot(page, "upstreams")
    _axe(page)


def test_events_arrive_live_and_replay_after_an_id(page: Any, stack: tuple[Gateway, str, Script]) -> None:
    gw, key, _ = stack
    page.goto(page.url.split("#")[0] + "#events")
    page.fill("#ev-topics", "tool.#")
    page.click("#ev-form button[type='submit']")
    page.wait_for_selector("#status:text('subscribed to tool.#')")
    headers = {"authorization": f"Bearer {key}"}
    r = httpx.post(f"{gw.url}/v1/tools/storage__bucket_usage/call", headers=headers,
                   json={"arguments": {"bucket": "fromconsole"}})
    assert r.status_code == 200
    page.wait_for_selector("#ev-list li:has-text('storage__bucket_usage')", timeout=15_000)
    first_id = page.get_attribute("#ev-list li:last-child", "data-id")
    _shot(page, "events")
    _axe(page)
    # Replay: a new subscription after that id gets what came after it, from the event log.
    httpx.post(f"{gw.url}/v1/tools/storage__bucket_usage/call", headers=headers, json={"arguments": {"bucket": "x"}})
    page.click("#ev-stop")
    page.evaluate("document.getElementById('ev-list').replaceChildren()")
    page.fill("#ev-from", first_id or "")
    page.click("#ev-form button[type='submit']")
    page.wait_for_selector("#ev-list li:has-text('storage__bucket_usage')", timeout=15_000)
    assert first_id not in [li.get_attribute("data-id") for li in page.query_selector_all("#ev-list li")]


def test_chat_with_a_model_that_calls_a_gateway_tool(page: Any, stack: tuple[Gateway, str, Script]) -> None:
    _, _, script = stack
    page.goto(page.url.split("#")[0] + "#chat")
    page.wait_for_selector("#chat-model option[value='scripted']", state="attached")
    page.fill("#chat-input", "make me a bucket called chatbucket")
    page.click("#chat-form button[type='submit']")
    page.wait_for_selector("#chat-log li.tool:has-text('call_tool')")
    page.wait_for_selector("#chat-log li.assistant:has-text('done:')", timeout=30_000)
    log = page.inner_text("#chat-log")
    assert "storage__bucket_create" in log and "chatbucket" in log
    # The model was offered the search-mode tools and got the tool's real result back.
    assert {t["function"]["name"] for t in script.requests[0]["tools"]} == {"find_tools", "call_tool"}
    assert any(m.get("role") == "tool" and "chatbucket" in m.get("content", "") for m in script.requests[-1]["messages"])
    _shot(page, "chat")
    _axe(page)


def test_plans_page(page: Any) -> None:
    page.goto(page.url.split("#")[0] + "#plans")
    page.wait_for_function("document.getElementById('plans').textContent.length > 0")
    _shot(page, "plans")
    _axe(page)
