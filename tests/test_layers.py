"""The import graph is the architecture: a product package imports only packages below it (or
itself), from the bottom up common → frames → speckle → vae → diffusion and inverse → explorer → app.py and
views. Every import counts, at the top of a module, inside a function or under TYPE_CHECKING.
Packages on one floor (diffusion and inverse) do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Bottom to top; app.py and views/ share the top floor.
LAYERS = [
    ("common",),
    ("frames",),
    ("speckle",),
    ("vae",),
    ("diffusion", "inverse"),
    ("explorer",),
    ("views", "app"),
]
APART = {"diffusion", "inverse"}  # one floor, and neither imports the other
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def product_modules() -> list[Path]:
    files = [ROOT / "app.py"]
    for name in LEVEL:
        if (ROOT / name).is_dir():
            files += sorted((ROOT / name).rglob("*.py"))
    return files


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_packages(source: str, package: str) -> list[tuple[str, int]]:
    """(first-party top-level package, line) of every import in a module of `package`, relative
    ones counted as its own package; third-party imports are left out."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [node.module or ""]
        else:
            continue
        found |= {(name.split(".")[0], node.lineno) for name in names}
    return sorted((top, line) for top, line in found if top in LEVEL)


def upward_imports(source: str, package: str) -> list[str]:
    """'line N imports P' for each import of a package above `package`, or beside it on its
    floor."""
    return [
        f"line {line} imports {top}"
        for top, line in imported_packages(source, package)
        if LEVEL[top] > LEVEL[package] or {top, package} == APART
    ]


def test_every_product_package_is_checked() -> None:
    assert {package_of(p) for p in product_modules()} == set(LEVEL)


@pytest.mark.parametrize("path", product_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_a_package_above_its_own(path: Path) -> None:
    assert upward_imports(path.read_text(encoding="utf-8"), package_of(path)) == []


def test_an_upward_import_is_caught() -> None:
    """The check itself, on speckle importing explorer under TYPE_CHECKING and vae inside a
    function; the imports from below, from itself and from third parties pass."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "from frames import read_image\n"
        "from common.atomic import atomic_dir\n"
        "if TYPE_CHECKING:\n"
        "    from explorer.atlas import Atlas\n"
        "def f():\n"
        "    import vae.model\n"
        "    from . import stats\n"
        "    from speckle.region import lit_mask\n"
    )
    assert upward_imports(source, "speckle") == ["line 6 imports explorer", "line 8 imports vae"]
    assert upward_imports(source, "explorer") == []
    assert upward_imports("from diffusion.data import load_pairs\n", "inverse") == [
        "line 1 imports diffusion"
    ]


def test_vae_holds_none_of_the_moved_modules() -> None:
    """What moved below vae/ (frames/, common/, speckle/lit_region.py) is not also there."""
    moved = {p.stem for name in ("common", "frames") for p in (ROOT / name).glob("*.py")}
    moved = (moved - {"__init__"}) | {"data", "lit_region"}
    here = {p.stem for p in (ROOT / "vae").glob("*.py")}
    here |= {p.name for p in (ROOT / "vae").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert here & moved == set()
