"""The shipped demo model loads with its provenance, and on a freshly generated held-out set (new
samples of handwriting it was never trained on, through the same simulated fibre) it meets its
reconstruction targets: explained variance ≥ 0.85 and a speckle contrast of the reconstructions
≥ 0.9 of the inputs' in the lit region. The probe targets need thousands of samples and minutes of
fitting: `python -m benchmarks.science` measures them and writes docs/validation.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from speckle.io import write_dataset
from speckle.mmf import simulate_mmf
from vae.checkpoint import load_checkpoint
from vae.evaluate import evaluate

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"
HELD_OUT_SEED = 2026  # the demo was trained on seed 0
N = 1000  # EV and the contrast ratio are settled well within this (EV 0.898 at 1000 and at 4000)


def test_demo_loads_and_records_its_provenance() -> None:
    ck = load_checkpoint(DEMO)
    c = ck.config
    assert ck.model_config.image_size == 64 and ck.model_config.latent_dim == 512
    assert c["command"].startswith("python -m vae.train ") and "--preset demo" in c["command"]
    assert c["dataset"]["simulation"]["kind"] == "mmf" and c["dataset"]["simulation"]["seed"] == 0
    # Trained on the train handwriting only, so that every held-out figure is on unseen digits.
    assert c["dataset"]["simulation"]["digits"] == "train"
    assert any(line.startswith("python -m speckle mmf") for line in c["recipe"])
    assert c["recon"] in ("sse", "mse") and c["beta"] > 0
    assert {"recon", "kl", "active_units"} <= set(c["metrics"])
    assert (DEMO / "model.safetensors").stat().st_size < 10 * 1024 * 1024


def test_the_beta_ladder_ships_within_30_mb() -> None:
    """At least three β of the demo preset, each loadable, float16 weights, all models together
    under 30 MB."""
    models = [p for p in DEMO.parent.iterdir() if (p / "config.json").is_file()]
    betas = sorted(load_checkpoint(p, lazy=True).beta for p in models)
    assert len(set(betas)) >= 3, betas
    for p in models:
        ck = load_checkpoint(p, lazy=True)
        assert ck.config["weights_dtype"] == "float16" and ck.config["preprocessing"]
    total = sum(f.stat().st_size for p in models for f in p.iterdir())
    assert total < 30 * 1024 * 1024


@pytest.mark.slow
def test_demo_meets_the_reconstruction_targets_on_a_fresh_held_out_set(tmp_path: Path) -> None:
    write_dataset(simulate_mmf(N, seed=HELD_OUT_SEED, digits="test"), tmp_path / "held-out")
    r = evaluate(str(DEMO), str(tmp_path / "held-out"), device="cpu")
    assert r["n"] == N
    assert r["ev"] >= 0.85, r
    assert r["contrast_ratio"] >= 0.9, r
    # The baseline the EV is measured against is real: the mean image alone correlates strongly.
    assert r["mean_image_pcc"] > 0.7, r
