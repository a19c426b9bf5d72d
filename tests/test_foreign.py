"""Data far from the model is named as such: the share of frames beyond the model's own
99th-percentile −ELBO, a one-line note when it is over half, and a note when frames were
resized; the bootstrap intervals that every headline figure carries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.bootstrap import bootstrap_mean
from vae import foreign
from vae.evaluate import main as evaluate_main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo"


def _simulate(out: Path, *extra: str) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "speckle",
        "mmf",
        "--n",
        "48",
        "--seed",
        "5",
        "--digits",
        "test",
        "--out",
        str(out),
        *extra,
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("foreign")
    return {
        "own": _simulate(root / "own"),  # the demo's fibre, new handwriting
        "other": _simulate(root / "other", "--fibre-seed", "99", "--size", "96"),
    }


def _evaluate(data: Path, capsys, monkeypatch) -> tuple[dict, str]:
    import json

    monkeypatch.setattr(foreign, "N_REFERENCE", 300)  # the rule, from fewer reference frames
    assert evaluate_main(["--checkpoint", str(DEMO), "--data", str(data), "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_the_models_own_fibre_is_not_foreign(sets, capsys, monkeypatch) -> None:
    r, err = _evaluate(sets["own"], capsys, monkeypatch)
    assert r["foreign_share"] < 0.2
    assert "simulated again from its record" in r["foreign_reference"]
    assert "foreign_note" not in r and "note:" not in err
    assert r["resized"] == []


def test_another_fibre_is_foreign_and_its_resize_is_said(sets, capsys, monkeypatch) -> None:
    r, err = _evaluate(sets["other"], capsys, monkeypatch)
    assert r["foreign_share"] > 0.5
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 2
    assert "96×96" in notes[0] and "64×64" in notes[0]
    assert "far from the model" in notes[1] and str(sets["other"]) in notes[1]


def test_bootstrap_interval_covers_the_mean_at_its_level() -> None:
    rng = np.random.default_rng(0)
    hits = 0
    for trial in range(200):
        x = rng.normal(1.0, 1.0, 100)
        low, high = bootstrap_mean(x, n_boot=400, seed=trial)["ci95"]
        hits += low <= 1.0 <= high
    assert 0.9 <= hits / 200 <= 0.99


def test_bootstrap_over_draws_widens_with_the_noise_within_items() -> None:
    """(N, K): the same item means, more spread between an item's draws, a wider interval."""
    rng = np.random.default_rng(1)
    items = rng.normal(0, 0.1, (60, 1))
    quiet = items + rng.normal(0, 0.01, (60, 8))
    noisy = items + rng.normal(0, 0.5, (60, 8))
    w_quiet = np.diff(bootstrap_mean(quiet)["ci95"])[0]
    w_noisy = np.diff(bootstrap_mean(noisy)["ci95"])[0]
    assert w_noisy > 2 * w_quiet
    with pytest.raises(ValueError):
        bootstrap_mean(np.zeros((2, 2, 2)))
