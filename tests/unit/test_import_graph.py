"""No import cycles between arsync's packages.

Each top-level package (``ledger``, ``erp``, ``web``, …) is a node. Above a feature's core sit
two more nodes of its own:

- its use cases (``flows``, ``tasks``, ``views``, and ``webhooks``, which handles an inbound
  webhook with a call back to the provider), which may call other features that depend on
  the feature itself: ``ledger.views`` shows an invoice's ERP push, and ``erp`` loads into the
  ledger's tables;
- its ``endpoints``, at the top with the web app, since routes reach the wired container.

Imports under ``if TYPE_CHECKING:`` count too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import arsync

PACKAGE = Path(arsync.__file__).parent
USE_CASE_MODULES = {"flows", "tasks", "views", "webhooks"}


def node_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "arsync"
    top = parts[1]
    if len(parts) > 2 and parts[-1] == "endpoints":
        return f"{top}.endpoints"
    return f"{top}+" if len(parts) > 2 and parts[-1] in USE_CASE_MODULES else top


def import_graph() -> dict[str, dict[str, set[str]]]:
    """node -> imported node -> the modules that import it."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "arsync":
                    targets = [f"arsync.{alias.name}" for alias in node.names]
                elif node.module.startswith("arsync."):
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith("arsync.")]
            for target in targets:
                source_node, target_node = node_of(module), node_of(target)
                if source_node != target_node:
                    graph[source_node][target_node].add(module)
    return graph


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph.get(node, {}):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_arsyncs_packages() -> None:
    graph = import_graph()
    assert {"ledger", "erp", "nomod", "web", "cli"} <= set(graph)
    assert "ledger" in graph["erp"], "erp loads into the ledger's tables"


def test_no_import_cycles_between_packages() -> None:
    graph = import_graph()
    found = cycles(graph)
    detail = [
        {a: {b: sorted(graph[a][b]) for b in component if b in graph[a]} for a in component} for component in found
    ]
    assert not found, detail


def test_a_cycle_is_reported() -> None:
    assert cycles({"a": {"b": {"x"}}, "b": {"c": {"y"}}, "c": {"a": {"z"}}}) == [["a", "b", "c"]]
