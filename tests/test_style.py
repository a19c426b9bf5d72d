"""House style that the formatter and linter cannot see (CONVENTIONS.md, item 8), checked from the
AST of every product module:

- no module imports a private `_name` from another module: what is shared is public;
- imports sit at the top of the module. One inside a function is deliberate: it keeps a measured
  start-up figure (docs/architecture.md, "Optimizations that stayed"), and a comment on its line or
  the line above says which.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from tests.test_layers import ROOT, product_modules

# Modules whose in-function imports may go without a comment: none.
UNEXPLAINED_LAZY_ALLOWED: set[str] = set()


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def private_imports(source: str) -> list[str]:
    """'line N: module._name' for each private name imported from another module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            where = "." * node.level + (node.module or "")
            names = [(alias.name, f"{where}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [(part, alias.name) for alias in node.names for part in alias.name.split(".")]
        else:
            continue
        found += [
            f"line {node.lineno}: {full}"
            for name, full in names
            if name.startswith("_") and not name.startswith("__")
        ]
    return found


def _comment_lines(source: str) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def unexplained_lazy_imports(source: str) -> list[str]:
    """'line N: import ...' for each import inside a function with no comment on its line, on the
    line above, or on another import of the same run of consecutive imports."""
    tree = ast.parse(source)
    comments = _comment_lines(source)
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(node, field, None)
                if not isinstance(block, list):
                    continue
                run: list[ast.stmt] = []
                for stmt in [*block, None]:
                    if isinstance(stmt, ast.Import | ast.ImportFrom):
                        run.append(stmt)
                        continue
                    if run:
                        lines = range(run[0].lineno - 1, run[-1].end_lineno + 1)
                        if not comments.intersection(lines):
                            found += [f"line {s.lineno}: {ast.unparse(s)}" for s in run]
                    run = []
    return sorted(set(found))


@pytest.mark.parametrize("path", product_modules(), ids=rel)
def test_no_private_name_is_imported(path: Path) -> None:
    assert private_imports(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", product_modules(), ids=rel)
def test_every_lazy_import_says_why(path: Path) -> None:
    if rel(path) in UNEXPLAINED_LAZY_ALLOWED:
        pytest.skip("on the allow-list")
    assert unexplained_lazy_imports(path.read_text(encoding="utf-8")) == []


def test_the_allow_list_is_still_needed() -> None:
    """A module leaves the allow-list once its lazy imports say why."""
    clean = {
        name
        for name in UNEXPLAINED_LAZY_ALLOWED
        if not unexplained_lazy_imports((ROOT / name).read_text(encoding="utf-8"))
    }
    assert clean == set()


def test_the_checks_catch_what_they_should() -> None:
    source = (
        "from frames.image import MIN_SIDE, _error\n"
        "import os._private\n"
        "from . import __version__\n"
        "def f():\n"
        "    # Lazy: keeps torch off the cached open.\n"
        "    import torch\n"
        "    from safetensors.torch import save_file\n"
        "    x = 1\n"
        "    import numpy\n"
        "    if x:\n"
        "        import h5py  # Lazy: h5py with the first HDF5 file.\n"
        "    else:\n"
        "        import tifffile\n"
    )
    assert private_imports(source) == ["line 1: frames.image._error", "line 2: os._private"]
    assert unexplained_lazy_imports(source) == ["line 13: import tifffile", "line 9: import numpy"]
