"""The library's rooms: each stage of utils/ imports only the stages before it, and no module
imports itself back through another (no circle)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ["data", "faces", "inference", "evaluation", "training"]  # in pipeline order
SHARED = {"errors", "io", "config", "runtime", "checkpoints", "distributed"}


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every utils module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("utils"):
            if node.module == "utils":
                found |= {f"utils.{a.name}" for a in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("utils.")}
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_of(p): _imports(p) for p in (REPO / "utils").rglob("*.py")}


def test_every_stage_package_imports() -> None:
    for stage in STAGES:
        assert importlib.import_module(f"utils.{stage}").__doc__


def test_a_stage_never_imports_a_later_stage_and_shared_modules_import_no_stage() -> None:
    wrong = []
    for module, deps in _graph().items():
        parts = module.split(".")
        for dep in deps:
            dparts = dep.split(".")
            if len(dparts) < 2:
                continue
            if parts[1] in STAGES and dparts[1] in STAGES and \
                    STAGES.index(dparts[1]) > STAGES.index(parts[1]):
                wrong.append(f"{module} imports the later stage {dep}")
            if parts[1] in SHARED and dparts[1] in STAGES:
                wrong.append(f"the shared module {module} imports the stage module {dep}")
    assert not wrong, wrong


def test_no_import_circle() -> None:
    graph = _graph()
    # a dependency named as a package stands for its __init__ only
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep):], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_no_module_of_one_stage_is_left_at_the_top_level() -> None:
    """A shared top-level module serves several stages or a stage and the scripts, never one
    stage alone (that module belongs in the stage's package)."""
    users: dict[str, set[str]] = {m: set() for m in SHARED}
    for module, deps in _graph().items():
        parts = module.split(".")
        for m in SHARED:
            if f"utils.{m}" in deps and len(parts) > 2:
                users[m].add(parts[1])
    for script in [*REPO.glob("*.py"), *(REPO / "bench").glob("*.py")]:
        for m in SHARED:
            if f"utils.{m}" in _imports(script):
                users[m].add("scripts")
    one_stage = {m: s for m, s in users.items() if len(s) == 1 and s <= set(STAGES)}
    assert not one_stage, one_stage
