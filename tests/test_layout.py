"""The house's layout: wings imported only downward, no circle of imports, a docstring that
says what each wing holds, and no torch in the wings that run without it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "aeinspect"
# From the ground up; a module may import its own wing and those below it, never above.
WINGS = ["ground", "data", "maps", "nets", "kinds", "model", "infer", "train", "evaluate",
         "report", "cli"]  # fmt: skip
GROUND = {"errors", "settings", "runtime", "__init__"}
NO_TORCH = ["data", "maps"]  # they run where torch is not installed (ONNX Runtime)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def wing(module: str) -> str:
    """The wing of ``aeinspect.x.y``: its first part, or the ground floor."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in GROUND:
        return "ground"
    return parts[1] if parts[1] != "__main__" else "cli"


def imports(path: Path) -> set[str]:
    """Every aeinspect module that ``path`` imports anywhere (functions and type-checking
    blocks included), as a dotted name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aeinspect"):
            found.update(_targets(node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("aeinspect"))
    return found


def _targets(module: str, names: list[str]) -> set[str]:
    """``from aeinspect.maps import ssim`` imports the module aeinspect.maps.ssim."""
    paths = {name: PACKAGE.parent / f"{module}.{name}".replace(".", "/") for name in names}
    modules = {f"{module}.{name}" for name, path in paths.items()
               if path.with_suffix(".py").exists()}  # fmt: skip
    return modules or {module}


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_own_wing_and_those_below(module: str) -> None:
    rank = WINGS.index(wing(module))
    upward = sorted(t for t in GRAPH[module] if WINGS.index(wing(t)) > rank)
    assert not upward, f"{module} ({wing(module)}) imports from above: {upward}"


def test_no_circle_of_imports() -> None:
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError(" -> ".join([*trail[trail.index(name) :], name]))
        if name in done:
            return
        for target in sorted(GRAPH.get(name, ())):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])


@pytest.mark.parametrize("name", WINGS[1:])
def test_every_wing_says_what_it_holds(name: str) -> None:
    docstring = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
    assert docstring and len(docstring.split()) >= 15, name


def test_the_wings_that_run_without_torch_import_none() -> None:
    names = [m for m in MODULES if wing(m) in NO_TORCH]
    code = f"import sys\nfor m in {names!r}: __import__(m)\nassert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
