"""explorer.runs: saving a retraining run where the model picker finds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer import runs, sources
from vae.checkpoint import CheckpointError, load_checkpoint

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


def test_save_run_copies_a_loadable_checkpoint_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPECKLE_VAE_RUNS_ROOT", str(tmp_path / "runs"))
    target = runs.save_run(DEMO, "beta-0.5_a")
    assert target == sources.runs_root() / "beta-0.5_a"
    assert load_checkpoint(target).id == load_checkpoint(DEMO).id
    assert not (target / "checkpoint" / "resume").exists()
    with pytest.raises(sources.PathError, match="exists already"):
        runs.save_run(DEMO, "beta-0.5_a")
    with pytest.raises(sources.PathError):
        runs.save_run(DEMO, "../outside")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(CheckpointError):
        runs.save_run(broken, "broken")
    # Only the saved run: no temporary left beside it.
    assert [p.name for p in sources.runs_root().iterdir()] == ["beta-0.5_a"]
