"""`pip install .` gives the packages, the demo model, the server settings and a console script
for the app; the project's dependencies are requirements.txt's."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("src")
    # Built from a copy, so that setuptools' build/ and egg-info never land in the checkout.
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (build / rel).parent.mkdir(parents=True, exist_ok=True)
            (build / rel).write_bytes(src.read_bytes())
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return zipfile.ZipFile(next(out.glob("*.whl")))


def test_the_wheel_holds_the_packages_the_models_and_the_settings(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for path in (
        "app.py",
        "common/atomic.py",
        "frames/reading.py",
        "speckle/cli.py",
        "vae/latents.py",
        "explorer/serving.py",
        "views/launch.py",
        "views/atlas.py",
        "views/generate.py",
        "diffusion/train.py",
        "explorer/generate.py",
        "inverse/train.py",
        "explorer/inverse.py",
        "views/inverse.py",
        "models/inverse/demo/tm/model.safetensors",
        "models/demo/model.safetensors",
        "models/demo/config.json",
        "models/generators/demo/model.safetensors",
        "models/generators/demo/regressor.safetensors",
        "models/generators/demo/config.json",
    ):
        assert path in names, path
    assert any(n.endswith("share/speckle-vae-explorer/.streamlit/config.toml") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "speckle-vae-explorer = views.launch:main" in wheel.read(entry).decode()


def _requirement(text: str) -> tuple[str, frozenset[str]]:
    from packaging.requirements import Requirement

    req = Requirement(text)
    return req.name.lower(), frozenset(str(s) for s in req.specifier)


def test_the_wheel_depends_on_requirements_txt(wheel: zipfile.ZipFile) -> None:
    meta = wheel.read(next(n for n in wheel.namelist() if n.endswith("METADATA"))).decode()
    declared = {
        _requirement(line.split(":", 1)[1])
        for line in meta.splitlines()
        if line.startswith("Requires-Dist:")
    }
    wanted = {
        _requirement(line)
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert declared == wanted
    assert ("torch", frozenset({"==2.13.0"})) in declared


def test_the_console_script_runs_the_app_with_the_server_settings() -> None:
    from views import launch

    cmd = launch.command(["--server.port", "8600"])
    assert cmd[:3] == ["streamlit", "run", str(ROOT / "app.py")]
    assert "--server.address=127.0.0.1" in cmd and "--server.enableXsrfProtection=true" in cmd
    assert "--runner.postScriptGC=false" in cmd
    assert cmd[-2:] == ["--server.port", "8600"]  # the user's own options come last and win
