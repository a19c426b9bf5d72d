"""explorer.map_process: a map fitted in a child process, cached like one fitted in place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from explorer import map_process
from explorer.atlas import build_projection


@dataclass
class _Dataset:
    def fingerprint(self) -> str:
        return "dataset-fp"


@dataclass
class _Checkpoint:
    id: str = "checkpoint-id"


@dataclass
class _Atlas:
    mu: np.ndarray
    checkpoint: _Checkpoint
    dataset: _Dataset


def test_a_child_fit_matches_one_in_place_and_is_cached(tmp_path, monkeypatch) -> None:
    # PCA, which goes through the same child and cache as UMAP without numba's compile.
    monkeypatch.setenv("SPECKLE_VAE_CACHE", str(tmp_path))
    mu = np.random.default_rng(0).standard_normal((80, 8)).astype(np.float32)
    atlas = _Atlas(mu, _Checkpoint(), _Dataset())
    proj, hit = map_process.build_projection(atlas, "pca", nice=5)
    assert not hit and proj.coords.shape == (80, 2) and proj.reducer is None
    here, here_hit = build_projection(atlas, "pca")  # reads what the child cached
    assert here_hit
    np.testing.assert_allclose(proj.coords, here.coords)

    # Cached now: read in this process, with no child.
    def no_child(*args, **kwargs):
        raise AssertionError("a child process for a cached map")

    monkeypatch.setattr(map_process.subprocess, "Popen", no_child)
    again, again_hit = map_process.build_projection(atlas, "pca")
    assert again_hit
    np.testing.assert_array_equal(again.coords, proj.coords)


def test_a_failed_child_fit_raises_its_last_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPECKLE_VAE_CACHE", str(tmp_path))
    atlas = _Atlas(np.zeros((2, 4), np.float32), _Checkpoint(), _Dataset())  # too few points
    with pytest.raises(RuntimeError, match="need at least 3 points"):
        map_process.build_projection(atlas, "pca")


def test_the_childs_progress_is_readable_while_it_runs_and_gone_after(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("SPECKLE_VAE_CACHE", str(tmp_path))
    mu = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    atlas = _Atlas(mu, _Checkpoint(), _Dataset())
    settings = ("pca", 15, 0.1, "euclidean")
    assert map_process.fit_progress(atlas, *settings) is None
    path = map_process.progress_path(map_process.map_path(atlas, *settings))
    path.parent.mkdir(parents=True)
    # What the child writes on each step (main's report).
    path.write_text('{"fraction": 0.4, "text": "placing the other points: 0 of 30000"}')
    assert map_process.fit_progress(atlas, *settings) == (
        0.4,
        "placing the other points: 0 of 30000",
    )
    map_process.build_projection(atlas, "pca", nice=0)
    assert not path.exists()  # removed once the child is done
