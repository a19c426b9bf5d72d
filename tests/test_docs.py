"""The command examples in README.md and docs/ run as written, on tiny data.

Each document's fenced `bash` blocks are read in order and run in a fresh working directory, with
sizes shrunk (`--n`, `--max-steps`, ...) so that a training run takes seconds. Commands that need
GPUs or several processes (`torchrun`, the 44M-parameter `paper` preset, `--compile`), the
benchmarks (minutes each) and the install and test commands themselves are left out; the rest
must exit 0, write what `--out` names and print valid JSON where `--json` asks for it.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(
    r"^(pip |streamlit |torchrun |ruff |SCREENSHOT_DIR=|python -m pytest|python -m benchmarks)"
    r"|--preset paper|--compile"
    # The imports read files the user made: test_export_recipe_runs_on_an_mlp_vae runs the
    # exported one after the recipe writes them; tests/test_import_weights.py covers the other.
    r"|^python -m vae\.import_"
)
SHRINK = [  # (pattern, replacement): tiny data and two training steps
    (r"--n \d+", "--n 64"),
    (r"--max-steps \d+", "--max-steps 2 --batch-size 8"),
    (r"--eval-every \d+", "--eval-every 1"),
    (r"--checkpoint-every \d+", "--checkpoint-every 1"),
    # The generator's evaluation: a few pairs, a short transmission-matrix fit, small sweeps.
    (
        r"^(python -m diffusion\.evaluate .*)$",
        r"\1 --n-patterns 16 --samples 2 --tm-steps 20 --sweep-patterns 4",
    ),
]
# Folders that examples read; a fixture set stands in for those a document does not write.
FIXTURES = ("data/mmf-test", "data/mmf-train", "data/mine", "my_frames")


def commands(doc: Path | str) -> list[str]:
    """The shell commands of a document's (or a piece of one's) ```bash blocks, continuation
    lines joined."""
    text = doc if isinstance(doc, str) else doc.read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def runnable(doc: Path) -> list[str]:
    cmds = []
    for cmd in commands(doc):
        if SKIP.search(cmd):
            continue
        assert cmd.startswith("python -m "), f"{doc.name}: unexpected example {cmd!r}"
        for pattern, repl in SHRINK:
            cmd = re.sub(pattern, repl, cmd)
        cmds.append(cmd)
    return cmds


def test_the_documents_have_examples_to_run() -> None:
    found = {doc.name: runnable(doc) for doc in DOCS}
    assert len(found["README.md"]) >= 6, found["README.md"]
    every = " ".join(c for cmds in found.values() for c in cmds)
    for module in (
        "speckle mmf",
        "speckle free",
        "speckle stats",
        "vae.train",
        "vae.evaluate",
        "explorer.encode",
        "diffusion.train",
        "diffusion.sample",
        "diffusion.evaluate",
    ):
        assert f"python -m {module}" in every, module


@pytest.fixture(scope="module")
def fixture_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from speckle.io import write_dataset
    from speckle.mmf import simulate_mmf

    root = tmp_path_factory.mktemp("fixture") / "set"
    write_dataset(simulate_mmf(64, seed=7), root)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("doc", [d for d in DOCS if runnable(d)], ids=lambda d: d.name)
def test_examples_run(doc: Path, fixture_set: Path, tmp_path: Path) -> None:
    cmds = runnable(doc)
    made = {a.split()[1] for c in cmds for a in re.findall(r"--out \S+", c)}
    for name in set(FIXTURES) - made:  # what the document reads but does not write
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(fixture_set, tmp_path / name)
    (tmp_path / "models").symlink_to(ROOT / "models")
    env = os.environ | {"PYTHONPATH": str(ROOT), "SPECKLE_VAE_CACHE": str(tmp_path / ".cache")}
    for cmd in cmds:
        argv = shlex.split(cmd)
        if (
            argv[2] == "speckle"
            and "--out" in argv
            and (tmp_path / argv[argv.index("--out") + 1]).exists()
        ):
            argv.append("--overwrite")  # two examples in one document write the same folder
        res = subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, f"{doc.name}: {cmd}\n{res.stderr[-2000:]}"
        if "--out" in argv:
            out = tmp_path / argv[argv.index("--out") + 1]
            assert out.is_dir() and any(out.iterdir()), f"{cmd}: nothing written to {out}"
        if "--json" in argv:
            rows = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
            assert rows and all(isinstance(r, dict) for r in rows), cmd


# ----------------------------------------------------------------------------- names in the docs
# What the documents name must exist: module paths (`vae/model.py`, `frames/`), dotted modules
# (`vae.train`, `python -m diffusion.evaluate`), constants named beside their module ("`MIN_SIDE`
# in `frames/image.py`", "`frames/lab.py` `MAX_UPLOAD_FRAMES`"), the environment variables the
# Settings table lists, and the documents' relative links. Example folders such as `runs/b005`
# or `data/mmf-test` are not the code's and are left alone.
CODE_DIRS = ("common", "frames", "speckle", "vae", "diffusion", "inverse", "explorer", "views")
PATH_ROOTS = (*CODE_DIRS, "tests", "benchmarks", "docs", ".streamlit", "models")
PATH = re.compile(r"^(?:\.?[A-Za-z_][\w.-]*/)+[\w.-]*$|^app\.py$")
DOTTED = re.compile(r"^(?:python -m )?([a-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\(\))?(?: .*)?$")
CONSTANT = r"[A-Z][A-Z0-9_]{2,}"
MODULE = r"[\w./]+"
NEXT_TO = [  # (constant, module) pairs, in either order
    re.compile(rf"`(?P<const>{CONSTANT})` in `(?P<module>{MODULE})`"),
    re.compile(rf"`(?P<module>{MODULE})` `(?P<const>{CONSTANT})`"),
    re.compile(rf"`(?P<module>{MODULE}) (?P<const>{CONSTANT})`"),
]


def backticked(doc: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    return re.findall(r"`([^`\n]+)`", text)


def module_file(name: str) -> Path | None:
    """The file of a module given as `a/b.py`, `a/b` or `a.b`; None when there is none."""
    parts = name.removesuffix(".py").replace("/", ".").split(".")
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def defined_names(path: Path, imported: bool = True) -> set[str]:
    """Top-level names a module defines, and those it imports (what `module.NAME` can reach)
    unless `imported` is False."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif imported and isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def named_paths(doc: Path) -> list[str]:
    """The code's paths that a document names; placeholders (NAME, RUN_DIR) and what commands
    write and git ignores (`benchmarks/results.json`) left out."""
    ignored = {line.strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()}
    found = [t for t in backticked(doc) if PATH.match(t) and t.split("/")[0] in PATH_ROOTS]
    return [t for t in found if not re.search(r"[A-Z]{3,}", t) and t.strip("/") not in ignored]


def named_modules(doc: Path) -> list[str]:
    tokens = backticked(doc) + commands(doc)
    found = [m.group(1) for t in tokens if (m := DOTTED.match(t))]
    return [name for name in found if name.split(".")[0] in CODE_DIRS]


def named_constants(doc: Path) -> list[tuple[str, str]]:
    text = doc.read_text()
    return [(m["const"], m["module"]) for rule in NEXT_TO for m in rule.finditer(text)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_path_named_exists(doc: Path) -> None:
    missing = [p for p in named_paths(doc) if not (ROOT / p).exists()]
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_module_named_exists(doc: Path) -> None:
    """`a.b` is a module, or `a.b.NAME` a name that module `a.b` defines; `python -m a.b` runs."""
    missing = []
    for name in named_modules(doc):
        if importlib.util.find_spec(name.split(".")[0]) and module_file(name):
            continue
        owner, _, attr = name.rpartition(".")
        path = module_file(owner)
        if path is None or attr not in defined_names(path):
            missing.append(name)
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_constant_named_is_where_the_docs_say(doc: Path) -> None:
    wrong = []
    for const, module in named_constants(doc):
        path = module_file(module)
        if path is None or const not in defined_names(path, imported=False):
            wrong.append(f"{const} in {module}")
    assert wrong == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_setting_named_is_read(doc: Path) -> None:
    files = [ROOT / "app.py", *(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))]
    code = "\n".join(p.read_text() for p in files)
    assert {
        v for v in re.findall(r"`(SPECKLE_VAE_\w+)`", doc.read_text()) if v not in code
    } == set()


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_relative_link_resolves(doc: Path) -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", doc.read_text())
    local = [link.split("#")[0] for link in links if not re.match(r"[a-z]+:|#", link)]
    assert [link for link in local if not (doc.parent / link).exists()] == []


def test_the_name_checks_find_names() -> None:
    readme = ROOT / "README.md"
    assert "tests/test_layers.py" in named_paths(readme)
    assert "vae.train" in named_modules(readme)
    assert ("MIN_SIDE", "frames/image.py") in named_constants(ROOT / "docs" / "data.md")
    assert module_file("frames/image.py") and module_file("vae.train") and module_file("frames")
    assert "MIN_SIDE" in defined_names(module_file("frames.image"), imported=False)
    assert "MIN_SIDE" not in defined_names(module_file("frames.lab"), imported=False)


# ----------------------------------------------------------------------------- the export recipe


def test_export_recipe_runs_on_an_mlp_vae(tmp_path: Path, monkeypatch) -> None:
    """docs/checkpoints.md's "Export your VAE in 10 lines", executed as written on a plain MLP VAE
    (classes of its own, nothing of ours), then the import command after it."""
    import torch
    from torch import nn

    from vae.checkpoint import load_checkpoint

    text = (ROOT / "docs" / "checkpoints.md").read_text()
    section = text.split("### Export your VAE in 10 lines", 1)[1]
    recipe = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    code_lines = [x for x in recipe.splitlines() if x.strip() and not x.startswith("import ")]
    assert len(code_lines) <= 10, code_lines
    command = next(c for c in commands(section) if c.startswith("python -m vae.import_exported"))

    class MLPVAE(nn.Module):
        def __init__(self, side: int = 32, dz: int = 16) -> None:
            super().__init__()
            self.side = side
            self.enc = nn.Sequential(nn.Flatten(), nn.Linear(side * side, 64), nn.ReLU())
            self.mu, self.logvar = nn.Linear(64, dz), nn.Linear(64, dz)
            self.dec = nn.Sequential(nn.Linear(dz, side * side), nn.Sigmoid())

        def encode(self, x):
            h = self.enc(x)
            return self.mu(h), self.logvar(h)

        def decode(self, z):
            return self.dec(z).view(-1, 1, self.side, self.side)

    monkeypatch.chdir(tmp_path)
    vae = MLPVAE()
    exec(compile(recipe, "docs/checkpoints.md", "exec"), {"vae": vae})
    res = subprocess.run(
        [sys.executable, *shlex.split(command)[1:]],
        cwd=tmp_path,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    ck = load_checkpoint(tmp_path / "models" / "mine")
    x = torch.rand(3, 1, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(ck.model.encode(x).mean, vae.encode(x)[0], atol=1e-6)
        assert torch.allclose(ck.model.decode(vae.encode(x)[0]), vae.decode(vae.encode(x)[0]))
