"""The house rules (docs/architecture.md), checked on the source: imports flow one way (no
cycle, the library never imports a command, commands lend each other nothing) and no module
passes 300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ORCHESTRATORS = {"echoclr.commands.experiment", "echoclr.commands.demo",  # run other commands
                 "echoclr.commands.experiment_spec"}  # checks tables against their configs


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "echoclr").rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """echoclr modules a file imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out & known


def test_no_import_cycle():
    mods = modules()
    graph = {name: imports(path, set(mods)) - {name} for name, path in mods.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*path, name, dep])
            if dep not in state:
                visit(dep, [*path, name])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_imports_flow_from_commands_to_the_library():
    mods = modules()
    for name, path in mods.items():
        deps = imports(path, set(mods))
        upward = {d for d in deps if d.startswith("echoclr.commands") or d == "echoclr.cli"}
        if name.startswith("echoclr.commands.") and name not in ORCHESTRATORS:
            assert not upward, f"{name} imports {sorted(upward)}: share it through the library"
        elif not name.startswith("echoclr.commands") and name not in ("echoclr.cli",
                                                                       "echoclr.__main__"):
            assert not upward, f"library module {name} imports {sorted(upward)}"
        if name.startswith("echoclr.data"):
            assert not deps & {"echoclr.models", "echoclr.losses", "echoclr.weights"}, name


def test_no_module_over_300_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in sizes.items() if n > 300} == {}
