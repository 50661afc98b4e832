"""The layers' import rules, read from the source: no import circle among the modules of
``bot/services`` and ``cogs``, no cog imports another cog, and no service imports a cog.

Every import statement counts, also one inside a function (a local import that hides a circle is
still a circle). Importing ``a.b.c`` runs ``a/b/__init__.py`` first, so it also counts as importing
each package above ``a.b.c``, except those that hold the importing module (already imported).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

from bot.app import EXTENSIONS

ROOT = Path(__file__).resolve().parents[1]
SCOPE = ("bot/services", "cogs")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for folder in SCOPE for path in sorted((ROOT / folder).rglob("*.py"))}


def _ancestors(name: str) -> Iterator[str]:
    parts = name.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def imported(name: str, path: Path) -> set[str]:
    """Every dotted name ``name`` imports (a ``from x import y`` gives ``x`` and ``x.y``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module → the modules of the scope that importing it runs."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        own = set(_ancestors(name)) | {name}
        edges: set[str] = set()
        for target in imported(name, path):
            # A package above the importing module is always imported already.
            if target in known and target not in own:
                edges.add(target)
                edges.update(parent for parent in _ancestors(target) if parent in known and parent not in own)
        graph[name] = edges - {name}
    return graph


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def extension_of(name: str) -> str | None:
    """The extension (a cog) a module of ``cogs`` belongs to; ``None`` for shared modules."""
    for extension in EXTENSIONS:
        if name == extension or name.startswith(extension + "."):
            return extension
    return None


def test_no_import_circle_in_services_and_cogs() -> None:
    assert circles(import_graph()) == []


def test_no_cog_imports_another_cog() -> None:
    crossings = sorted(
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if name.startswith("cogs.")
        for target in targets
        if extension_of(target) not in (None, extension_of(name))
    )
    assert crossings == []


def test_no_service_imports_a_cog() -> None:
    upward = sorted(
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        if name.startswith("bot.services")
        for target in targets
        if target.startswith("cogs")
    )
    assert upward == []


def test_the_rules_see_a_circle_and_a_crossing() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert extension_of("cogs.imagine._views") == "cogs.imagine"
