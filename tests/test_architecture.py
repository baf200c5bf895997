"""The package's import rules (docs/architecture.md), read from the code itself.

Every ``import`` in ``webhooks/`` counts, lazy ones inside functions included; only imports
under ``if TYPE_CHECKING:`` (which never run) are left out.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import webhooks

PACKAGE = Path(webhooks.__file__).parent
ROOT = "webhooks"

#: Import edges allowed to close a cycle, each with the reason it cannot be avoided.
ALLOWED_CYCLE_EDGES: dict[tuple[str, str], str] = {
    ("webhooks", "webhooks.outbox"): (
        "the package's public facade: send_event imports the outbox when called, so that "
        "`import webhooks` (which every submodule triggers, e.g. for __version__) stays free "
        "of models and settings"
    ),
}

#: Transport: what signs and sends. It must work without Django's ORM.
TRANSPORT = ("webhooks.signing", "webhooks.http", "webhooks.ssrf")
#: DRF modules only the API subpackage may import.
DRF_VIEW_LAYER = ("rest_framework.views", "rest_framework.viewsets", "rest_framework.routers",
                  "rest_framework.generics", "rest_framework.mixins",
                  "rest_framework.decorators")


@dataclass(frozen=True)
class Import:
    module: str  # what the import statement names, resolved to an absolute dotted name
    line: int
    lazy: bool  # inside a function


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
            if "migrations" not in p.parts}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other, in_function
                yield from _walk(other, in_function)
            continue
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef
                                          | ast.Lambda)
        yield child, inner
        yield from _walk(child, inner)


@cache
def imports_of(name: str) -> tuple[Import, ...]:
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node, lazy in _walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from webhooks import ids`` imports the submodule webhooks.ids.
                candidate = f"{base}.{alias.name}"
                found.append(Import(candidate if candidate in modules() else base,
                                    node.lineno, lazy))
    return tuple(found)


def internal_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name in modules():
        for imp in imports_of(name):
            target = imp.module
            while target and target not in modules():
                target = target.rpartition(".")[0]
            if target.startswith(ROOT) and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in sorted(set(graph) | {w for targets in graph.values() for w in targets}):
        if v not in index:
            visit(v)
    return found


def test_the_rules_see_every_module_and_lazy_imports() -> None:
    """The reader itself: it finds the package's modules and the imports inside functions."""
    assert {"webhooks", "webhooks.models", "webhooks.tasks", "webhooks.http"} <= set(modules())
    assert any(imp.lazy and imp.module == "webhooks.outbox" for imp in imports_of("webhooks"))
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph = internal_graph()
    for source, target in ALLOWED_CYCLE_EDGES:
        assert target in graph.get(source, set()), (
            f"{source} -> {target} is allowed but no longer exists: drop it from the list")
        graph[source].discard(target)
    assert cycles(graph) == []


def test_only_the_task_adapter_imports_django_q() -> None:
    offenders = [f"{name}:{imp.line} imports {imp.module}" for name in modules()
                 for imp in imports_of(name)
                 if imp.module.split(".")[0] == "django_q" and name != "webhooks.tasks"]
    assert offenders == []


def test_only_the_api_imports_drf_views_viewsets_and_routers() -> None:
    offenders = [f"{name}:{imp.line} imports {imp.module}" for name in modules()
                 for imp in imports_of(name)
                 if imp.module.startswith(DRF_VIEW_LAYER)
                 and not name.startswith("webhooks.api")]
    assert offenders == []


@pytest.mark.parametrize("transport", TRANSPORT)
def test_the_transport_imports_nothing_of_the_orm(transport: str) -> None:
    """Neither the module nor anything of ours it imports, however indirectly, touches
    ``django.db`` or our models."""
    graph = internal_graph()
    seen, todo = set(), [transport]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += graph.get(name, set()) - {ROOT}  # the facade only lends __version__
    offenders = [f"{name}:{imp.line} imports {imp.module}" for name in sorted(seen)
                 for imp in imports_of(name)
                 if imp.module.startswith(("django.db", "webhooks.models"))]
    assert offenders == []
    assert "webhooks.models" not in seen


def test_the_facade_lends_only_its_version() -> None:
    """Modules may take ``__version__`` from the package, nothing else: the package's
    ``__init__`` is the public API, not a place for shared code."""
    offenders = []
    for name, path in modules().items():
        if name == ROOT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == ROOT and not node.level:
                offenders += [f"{name}:{node.lineno} takes {a.name}" for a in node.names
                              if a.name != "__version__" and f"{ROOT}.{a.name}" not in modules()]
            elif isinstance(node, ast.Import) and any(a.name == ROOT for a in node.names):
                offenders.append(f"{name}:{node.lineno} imports the package")
    assert offenders == []
