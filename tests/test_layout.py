"""The library's layout (docs/design.md, "Layout"): imports flow one way, and functions stay short.

The import graph is read from the source with ``ast`` (every ``import`` and ``from ... import``,
including those inside functions), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"
#: modules that may import nothing of the pipeline except each other (docs/design.md: the leaves,
#: plus onnx_runtime: the one ONNX Runtime session factory that supernet and evaluate share, and
#: quantize: the one INT8 path, whose provider list config validates profiles against)
LEAVES = {"schema", "atomic", "errors", "config", "space", "onnx_runtime", "quantize"}
#: packages that search and generate must never reach (adaptation is a callback the stage wires)
FORBIDDEN = {
    "search": {"supernet", "train", "generate", "bench", "stages"},
    "generate": {"supernet", "train", "bench", "stages", "run_dir", "results", "console", "runtime"},
    "supernet": {"train", "evaluate", "search", "generate", "bench", "stages"},
    "space": {"supernet", "train", "evaluate", "search", "generate", "bench", "stages"},
    "train": {"search", "generate", "bench", "stages"},
    "evaluate": {"search", "generate", "bench", "stages"},
    "run_dir": {"console", "runtime", "stages"},
}
#: the process and run-directory layer: the stage layer hands paths, sinks and reporters to the
#: algorithm packages, which never import it
STAGE_LAYER = {"run_dir", "results", "console", "runtime"}
#: the packages that are handed a directory, a sink and a progress reporter
INJECTED = ("train", "search", "evaluate", "generate")


def _unit(path: Path) -> str:
    """The top-level unit a file belongs to: its package, or the module name for pipeline/*.py."""
    relative = path.relative_to(PIPELINE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_units(path: Path) -> set[str]:
    units: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "pipeline":
                names = [f"pipeline.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "pipeline" and len(parts) > 1:
                units.add(parts[1])
    return units


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PIPELINE.rglob("*.py"):
        unit = _unit(path)
        if unit == "__init__":
            continue
        graph.setdefault(unit, set()).update(_imported_units(path) - {unit})
    return graph


def test_no_import_cycle_between_packages() -> None:
    graph = _graph()
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        for target in sorted(graph.get(node, ())):
            if target in stack:
                cycles.append(stack[stack.index(target):] + [target])
            elif len(stack) < len(graph):
                visit(target, stack + [target])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, f"import cycles between pipeline units: {cycles[:5]}"


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaves_import_only_leaves(leaf: str) -> None:
    reached = _graph().get(leaf, set())
    assert reached <= LEAVES, f"{leaf} imports {sorted(reached - LEAVES)}"


@pytest.mark.parametrize("unit", sorted(FORBIDDEN))
def test_forbidden_dependencies(unit: str) -> None:
    reached = _graph().get(unit, set())
    assert not reached & FORBIDDEN[unit], f"{unit} imports {sorted(reached & FORBIDDEN[unit])}"


@pytest.mark.parametrize("unit", INJECTED)
def test_packages_import_no_stage_layer_module(unit: str) -> None:
    reached = _graph().get(unit, set())
    assert not reached & STAGE_LAYER, f"{unit} imports {sorted(reached & STAGE_LAYER)}"


def test_evaluate_reads_training_output_only_through_its_file_names() -> None:
    """``evaluate`` finds the published supernet through ``train.files`` and uses nothing else of ``train``."""
    reached: set[str] = set()
    for path in (PIPELINE / "evaluate").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline.train"):
                reached.add(node.module)
            elif isinstance(node, ast.Import):
                reached.update(a.name for a in node.names if a.name.startswith("pipeline.train"))
    assert reached <= {"pipeline.train.files"}, f"evaluate imports {sorted(reached)}"


def test_search_holds_no_pnag_file_and_generate_exists() -> None:
    assert (PIPELINE / "generate" / "__init__.py").is_file()
    assert not [p.name for p in (PIPELINE / "search").glob("*.py") if "pnag" in p.name]


def test_no_function_longer_than_80_lines() -> None:
    long_ones: list[str] = []
    for path in PIPELINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    long_ones.append(f"{path.relative_to(PIPELINE)}:{node.name} ({length} lines)")
    assert not long_ones, f"functions over 80 lines: {long_ones}"


def test_stages_only_wires() -> None:
    assert len((PIPELINE / "stages.py").read_text().splitlines()) < 150
