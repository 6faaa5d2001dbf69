"""The house rules, checked where CI checks everything: ruff (with C901 at 12), the
import layers (import-linter), the types (mypy), and functions of at most 60 lines."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60


def _tool(name: str) -> str:
    """The tool's executable beside this Python (the test extra installs it)."""
    found = Path(sys.executable).with_name(name)
    if found.exists():
        return str(found)
    where = shutil.which(name)
    if where is None:
        pytest.fail(f"{name} is not installed (pip install '.[test]')")
    return where


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function or method longer than `limit` lines,
    nested ones included, decorators not counted."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append((node.name, node.lineno, length))
    return found


def test_the_length_rule_sees_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    assert long_functions(f"def f():\n{body}\n") == [("f", 1, 61)]
    assert long_functions("def g():\n    return 1\n") == []


def test_no_function_is_longer_than_60_lines():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} {name} ({length} lines)"
        for path in sorted((ROOT / "vaetraj").rglob("*.py"))
        for name, line, length in long_functions(path.read_text())
    ]
    assert offenders == []


def test_ruff_passes_with_complexity_at_12():
    result = _run(_tool("ruff"), "check", "vaetraj", "tests", "examples")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "max-complexity = 12" in (ROOT / "pyproject.toml").read_text()


def test_the_import_layers_hold():
    result = _run(_tool("lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.slow
def test_mypy_passes():
    result = _run(_tool("mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_api_functions_are_not_shadowed_by_subpackages():
    """`vaetraj.train` and `vaetraj.optimize` are the functions, whatever has been
    imported: a subpackage of the same name would replace them once imported (it did:
    the README's `vaetraj.train(...)` then `vaetraj.optimize(...)` failed)."""
    import importlib
    import pkgutil

    import vaetraj

    for module in pkgutil.walk_packages(vaetraj.__path__, "vaetraj."):
        if not module.name.endswith("__main__"):  # that one runs the program
            importlib.import_module(module.name)
    for name in vaetraj.__all__:
        if name[0].islower() and name != "__version__":
            assert callable(getattr(vaetraj, name)), name
    assert vaetraj.train.__module__ == "vaetraj.pipeline.train"
    assert vaetraj.optimize.__module__ == "vaetraj.pipeline.optimize"


def test_the_runtime_contract_names_every_pipeline_module():
    """The import contract that keeps vaetraj/pipeline/runtime a layer under the
    commands lists the commands' modules: a new one must join it (else the runtime could
    import it unseen)."""
    import re

    text = (ROOT / "pyproject.toml").read_text()
    listed = re.search(r'containers = \["vaetraj.pipeline"\].*?layers = \[\s*"([^"]+)"', text, re.S)
    assert listed is not None
    above = {name.strip() for name in listed.group(1).split(":")}
    modules = {path.stem for path in (ROOT / "vaetraj" / "pipeline").glob("*.py")} - {"__init__"}
    assert above == modules
