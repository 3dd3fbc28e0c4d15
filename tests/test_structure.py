"""The shape of the code, checked rather than eyeballed: no import circles anywhere in the
product, the core never imports discord, SQL stays in bot/store/, cogs never import each other,
and no module of the core grows past ~400 lines without saying why in its docstring."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "cogs")
MAX_LINES = 400
#: A module may be longer if its docstring says why, with these words.
LONG_REASON = "Longer than 400 lines because"


def modules() -> dict[str, Path]:
    """Dotted name → file, for every product module."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every product module `name` imports, wherever the import stands (TYPE_CHECKING blocks
    and function bodies included: a circle hidden there is still a circle to a reader)."""
    tree = ast.parse(path.read_text("utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{alias.name}" for alias in node.names}
            targets.update(submodules & known.keys())
            if not submodules <= known.keys():  # names defined in `base` itself
                targets.add(base)
    return {t for t in targets if t in known and t != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    assert cycles(graph()) == []


#: The one handover from the core to the Discord layer: `seedance-bot run` starts the bot.
HANDOVER = {"bot.cli"}


def test_the_core_never_imports_discord() -> None:
    for name, path in modules().items():
        if not name.startswith("bot") or name in HANDOVER:
            continue
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "discord" or n.startswith(("discord.", "cogs")) for n in names), (
                f"{name} imports {names}")


def test_cogs_never_import_each_other() -> None:
    """Cogs reach shared code in cogs/utils/ and the core through the bot's typed `core`;
    cogs/app.py loads them by name and imports none."""
    edges = graph()
    cogs = {n for n in edges if n.startswith("cogs.") and not n.startswith("cogs.utils")
            and n != "cogs.app"}
    for name in cogs | {"cogs.app"}:
        assert not edges[name] & cogs, f"{name} imports {edges[name] & cogs}"
    for name in (n for n in edges if n.startswith("cogs.utils")):
        assert not {t for t in edges[name] if not t.startswith(("cogs.utils", "bot"))}, name


SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b",
                 re.IGNORECASE)


def test_sql_lives_in_the_store_only() -> None:
    for name, path in modules().items():
        if name.startswith("bot.store"):
            continue
        assert not SQL.search(path.read_text("utf-8")), f"SQL in {name}"


@pytest.mark.parametrize("name", sorted(n for n in modules() if n.startswith("bot")))
def test_core_modules_stay_readable(name: str) -> None:
    path = modules()[name]
    lines = path.read_text("utf-8").count("\n")
    doc = ast.get_docstring(ast.parse(path.read_text("utf-8"))) or ""
    assert lines <= MAX_LINES or LONG_REASON in doc, (
        f"{name} has {lines} lines; split it, or say why in its docstring ({LONG_REASON} …)")
