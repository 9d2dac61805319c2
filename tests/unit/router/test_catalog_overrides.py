"""The catalog applies tool overrides before anything downstream sees a tool, and keeps per-tenant
views (issue 27): hidden tools have no entry, renamed ones resolve under the new name only,
pinned arguments leave the schema, a tenant's own upstreams and overrides stay in its view."""

from __future__ import annotations

from typing import Any

import mcp.types as mt
import pytest

from router.registry.catalog import Catalog, ToolEntry
from router.upstreams.definitions import ToolOverride
from vsm_mcp.errors import NotFound


def tool(name: str, description: str = "", props: tuple[str, ...] = ("a", "b")) -> mt.Tool:
    schema = {"type": "object", "properties": {p: {"type": "integer"} for p in props}, "required": list(props)}
    return mt.Tool(name=name, description=description or f"{name} things", input_schema=schema)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def on_change(self, server: str, tools: list[ToolEntry]) -> None:
        self.calls.append((server, sorted(e.public_name for e in tools)))


@pytest.fixture
def catalog() -> Catalog:
    c = Catalog()
    c.set_server("gh", tools=[tool("search"), tool("delete_repo"), tool("add")])
    c.set_server("fs", tools=[tool("read", props=("path",))])
    return c


def names(c: Catalog, tenant: str | None = None) -> list[str]:
    return sorted(e.public_name for e in c.tools(tenant))


def test_global_overrides(catalog: Catalog) -> None:
    seen = Recorder()
    catalog.add_listener(seen)
    catalog.set_overrides({None: {
        ("gh", "search"): ToolOverride(name="find_issues", description="Find issues.", tags=("gh:read",), cacheable=True),
        ("gh", "delete_repo"): ToolOverride(hidden=True),
        ("gh", "add"): ToolOverride(pin={"b": 7}),
    }})
    assert names(catalog) == ["find_issues", "fs__read", "gh__add"]
    renamed = catalog.resolve("find_issues")
    assert (renamed.server, renamed.name, renamed.description, renamed.tags) == ("gh", "search", "Find issues.", ("gh:read",))
    assert renamed.cacheable and renamed.public_tool().name == "find_issues"
    assert renamed.public_tool().description == "Find issues." and renamed.tool.name == "find_issues"
    for gone in ("gh__search", "gh__delete_repo"):
        with pytest.raises(NotFound):
            catalog.resolve(gone)
    pinned = catalog.resolve("gh__add")
    assert pinned.pinned == {"b": 7}
    assert set(pinned.input_schema["properties"]) == {"a"} and pinned.input_schema["required"] == ["a"]
    assert ("gh", ["find_issues", "gh__add"]) in seen.calls  # the search index hears the new names
    catalog.set_overrides({})
    assert names(catalog) == ["fs__read", "gh__add", "gh__delete_repo", "gh__search"]


def test_unknown_server_says_no_upstream(catalog: Catalog) -> None:
    with pytest.raises(NotFound, match="no upstream 'gone'"):
        catalog.resolve("gone__tool")
    with pytest.raises(NotFound) as exc:
        catalog.resolve("gh__nope")
    assert "no upstream" not in exc.value.message


def test_a_rename_never_takes_a_name_in_use(catalog: Catalog) -> None:
    catalog.set_overrides({None: {("gh", "search"): ToolOverride(name="fs__read")}})
    assert names(catalog) == ["fs__read", "gh__add", "gh__delete_repo", "gh__search"]
    assert catalog.resolve("fs__read").server == "fs"


def test_tenant_views(catalog: Catalog) -> None:
    seen = Recorder()
    catalog.add_listener(seen)
    catalog.set_owner("gh@acme", "acme", "gh2")
    catalog.set_server("gh@acme", tools=[tool("search")])
    catalog.set_overrides({
        None: {("gh", "delete_repo"): ToolOverride(hidden=True)},
        "acme": {("gh", "search"): ToolOverride(description="acme's search")},
    })
    base = ["fs__read", "gh__add", "gh__search"]
    assert names(catalog) == base and names(catalog, "beta") == base
    assert names(catalog, "acme") == sorted([*base, "gh2__search"])
    assert catalog.resolve("gh__search", "acme").description == "acme's search"
    assert catalog.resolve("gh__search", "beta").description == "search things"
    assert catalog.resolve("gh2__search", "acme").server == "gh@acme"
    with pytest.raises(NotFound):
        catalog.resolve("gh2__search", "beta")
    with pytest.raises(NotFound):
        catalog.resolve("gh__delete_repo", "acme")  # the global hide holds in the tenant's view
    assert catalog.view_of("acme") == "acme" and catalog.view_of("beta") is None
    assert catalog.index_keys("beta") == {"gh", "fs"}
    assert catalog.index_keys("acme") == {"fs", "gh@acme"}  # gh's acme variant is indexed as gh@acme too
    indexed: dict[str, Any] = dict(seen.calls)
    assert indexed["gh@acme"] == ["gh2__search", "gh__add", "gh__search"]
    assert catalog.resources() == [] and catalog.prompts() == []
    catalog.remove_server("gh@acme")
    catalog.set_owner("gh@acme", None)
    catalog.set_overrides({})
    assert names(catalog, "acme") == ["fs__read", "gh__add", "gh__delete_repo", "gh__search"]
    assert catalog.view_of("acme") is None


def test_docstring_indentation_is_not_passed_on() -> None:
    """A Python server's docstring arrives as written; agents get it without the indentation,
    the text (and a deliberate relative indent) otherwise unchanged."""
    c = Catalog()
    doc = "Read a file.\n\n        Args are paths:\n            - relative to the root\n        Returns text."
    c.set_server("fs", tools=[tool("read", description=doc), tool("plain", description="One line.")])
    read = c.resolve("fs__read")
    assert read.description == read.public_tool().description == (
        "Read a file.\n\nArgs are paths:\n    - relative to the root\nReturns text.")
    assert c.resolve("fs__plain").tool is not None and c.resolve("fs__plain").description == "One line."
