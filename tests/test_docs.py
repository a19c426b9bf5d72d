"""The command examples in README.md and docs/ run as written, on tiny data.

Each document's fenced `bash` blocks are read in order and run in a fresh working directory, with
sizes shrunk (`--n`, `--max-steps`, ...) so that a training run takes seconds. Commands that need
GPUs or several processes (`torchrun`, the 44M-parameter `paper` preset, `--compile`), the
benchmarks (minutes each) and the install and test commands themselves are left out; the rest
must exit 0, write what `--out` names and print valid JSON where `--json` asks for it.
"""

from __future__ import annotations

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


def commands(doc: Path) -> list[str]:
    """The shell commands of a document's ```bash blocks, continuation lines joined."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
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
