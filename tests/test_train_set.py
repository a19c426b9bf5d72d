"""A generator's training set simulated again from its record: every physical parameter of the
record is used (fibre, size, grain, core, placement ranges), and the rebuilt frames are the
original ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion.train_set import check_rebuilt, training_set
from speckle.mmf import simulate_from_record

ROOT = Path(__file__).resolve().parents[1]
PHYSICS = (
    "n",
    "seed",
    "size",
    "fibre_seed",
    "shift",
    "rotation",
    "scale",
    "grain",
    "core",
    "digits",
    "bend",
    "bend_seed",
    "states",
    "intensity_scale",
)


@pytest.fixture
def original(tmp_path: Path) -> Path:
    """A set simulated with non-default physics, as someone's generator was trained on."""
    out = tmp_path / "original"
    cmd = [
        sys.executable,
        "-m",
        "speckle",
        "mmf",
        "--n",
        "24",
        "--seed",
        "3",
        "--size",
        "32",
        "--fibre-seed",
        "77",
        "--grain",
        "3",
        "--core",
        "0.8",
        "--shift",
        "1",
        "--rotation",
        "5",
        "--scale",
        "0.95,1.05",
        "--digits",
        "test",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return out


def test_rebuilt_set_is_the_recorded_one(original: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPECKLE_VAE_CACHE", str(tmp_path / "cache"))
    record = json.loads((original / "simulation.json").read_text())
    config = {"dataset": {"path": str(tmp_path / "gone"), "simulation": record}}
    found = training_set(config, log=lambda m: None, progress=False)
    assert found.source == "simulated from the generator's record"
    rebuilt = json.loads((found.path / "simulation.json").read_text())
    for key in PHYSICS:
        assert rebuilt[key] == record[key], key
    for name in ("images/000000.png", "images/000023.png", "patterns/000005.png"):
        a = np.asarray(Image.open(original / name))
        b = np.asarray(Image.open(found.path / name))
        np.testing.assert_array_equal(a, b)
    # The same record in memory: the same intensities as the original's simulation.
    sim = simulate_from_record(record, n=4)
    assert sim.images.shape == (4, 32, 32)


def test_a_record_the_simulator_no_longer_makes_is_refused(original: Path) -> None:
    record = json.loads((original / "simulation.json").read_text())
    assert "matched" in check_rebuilt(original, record)
    with pytest.raises(ValueError, match="fibre_seed"):
        check_rebuilt(original, dict(record, fibre_seed=78))
    with pytest.raises(ValueError, match="intensity_scale"):
        check_rebuilt(original, dict(record, intensity_scale=record["intensity_scale"] * 1.01))


def test_user_patterns_cannot_be_rebuilt(tmp_path: Path) -> None:
    record = {
        "kind": "mmf",
        "n": 10,
        "seed": 0,
        "fibre_seed": 1,
        "digits": None,
        "command": ["python", "-m", "speckle", "mmf", "--patterns", "mine/"],
    }
    config = {"dataset": {"path": str(tmp_path / "gone"), "simulation": record}}
    with pytest.raises(ValueError, match=r"--patterns mine/.*--train-data"):
        training_set(config, progress=False)
    given = tmp_path / "given"
    given.mkdir()
    assert training_set(config, given=given).source == "given"
