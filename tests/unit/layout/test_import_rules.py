"""The import rules of docs/ARCHITECTURE.md ("Map"), checked on the source.

* the kernel (``vsm_mcp``) never imports ``router`` or ``servers`` — ``vsm_mcp.cli``, the
  composition root, excepted;
* ``servers.<a>`` never imports ``router`` nor ``servers.<b>`` (they call tools through the router);
* ``router`` never imports ``servers`` (built-ins are loaded by import path from manifests);
* no cycle between parts — a part is a kernel module or package (``vsm_mcp.bus``), a router
  package or top module (``router.registry``, ``router.dispatch``), or a server package.

Every import statement counts, also one inside a function: a lazy import is still a dependency.
Only ``if TYPE_CHECKING:`` blocks are left out (they never run).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("vsm_mcp", "router", "servers")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _sources() -> dict[str, set[str]]:
    return {
        _module_name(path): _imports(path)
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def part_of(module: str) -> str:
    """``vsm_mcp.bus.amqp`` → ``vsm_mcp.bus``; ``router.registry.index`` → ``router.registry``;
    ``servers.planner.server`` → ``servers.planner``."""
    bits = module.split(".")
    return ".".join(bits[:2])


def test_the_kernel_imports_neither_router_nor_servers() -> None:
    bad = [
        f"{module} imports {name}"
        for module, names in _sources().items()
        if module.startswith("vsm_mcp") and not module.startswith("vsm_mcp.cli")
        for name in names
        if name.split(".")[0] in ("router", "servers")
    ]
    assert bad == []


def test_servers_import_neither_the_router_nor_each_other() -> None:
    bad = []
    for module, names in _sources().items():
        if not module.startswith("servers."):
            continue
        own = part_of(module)
        for name in names:
            shared = part_of(name) == "servers.tool_errors"  # the one module every server shares
            if name.startswith("router") or (name.startswith("servers.") and part_of(name) != own and not shared):
                bad.append(f"{module} imports {name}")
    assert bad == []


def test_the_router_does_not_import_servers() -> None:
    bad = [f"{m} imports {n}" for m, names in _sources().items() if m.startswith("router")
           for n in names if n.startswith("servers")]
    assert bad == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def part_graph() -> dict[str, set[str]]:
    sources = _sources()
    known = {part_of(m) for m in sources}
    graph: dict[str, set[str]] = defaultdict(set)
    for module, names in sources.items():
        src = part_of(module)
        for name in names:
            dst = part_of(name)
            if dst != src and dst in known:
                graph[src].add(dst)
    return graph


def test_no_import_cycle_between_parts() -> None:
    assert _cycles(part_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
