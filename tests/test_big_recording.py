"""A big recording's latents are read in place: the app's atlas holds the store's float16 memory
maps, not float32 copies; the errors of a store encoded without them are computed on request
above explorer.atlas.ERRORS_AUTO_MAX and filed in the store; and what the pages derive from μ
(KL per dim, the traversal scale, nearest neighbours, the map child's input) is computed a slice
at a time with the same result as on arrays in memory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from common import cache
from explorer import atlas as atlas_mod
from explorer.latent_ops import NeighbourIndex, nearest
from explorer.map_process import latents_file
from frames import ImageFolder, Normalization
from speckle.io import write_dataset
from speckle.mmf import simulate_mmf
from tests.test_explorer import tiny_checkpoint
from vae import kl as kl_mod
from vae.latent_store import create_store, open_store
from vae.latents import encode_to_store, store_path


@pytest.fixture
def stored(tmp_path: Path, monkeypatch):
    """A 40-frame data set encoded into its store without errors, in a fresh cache."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    data = tmp_path / "rec"
    write_dataset(simulate_mmf(40, seed=4, size=32), data, file_format="h5")
    model = tiny_checkpoint(tmp_path / "m")
    dataset = ImageFolder(data, 32, Normalization())
    path = store_path(model, dataset)
    store = create_store(path, len(dataset), 8, model.id, dataset.fingerprint(), errors=False)
    assert encode_to_store(model, dataset, store, batch_size=16) == 40
    return model, dataset, path


def test_a_store_is_read_in_place_and_its_errors_come_on_request(stored, monkeypatch) -> None:
    model, dataset, path = stored
    monkeypatch.setattr(atlas_mod, "ERRORS_AUTO_MAX", 10)  # 40 frames count as a big recording
    atlas = atlas_mod.build_atlas(model, dataset, defer_errors=True)
    assert isinstance(atlas.mu, np.memmap) and atlas.mu.dtype == np.float16
    assert isinstance(atlas.logvar, np.memmap)
    # Nothing is decoded until a page asks: the task exists but has not started.
    assert not atlas.errors_requested and not atlas.errors_ready
    assert not open_store(path).errors
    errors = atlas.recon_error  # asking starts it and waits
    assert atlas.errors_requested and atlas.errors_ready and errors.shape == (40,)
    assert np.isfinite(errors).all() and (errors > 0).all()
    # Filed in the store, not as a second copy of the latents in the cache.
    again = open_store(path)
    assert again.errors
    np.testing.assert_array_equal(again.mapped()["recon_error"], errors)
    assert [p.suffix for p in path.parent.iterdir()] == [".store"]
    # A rerun of the encode without errors keeps the store (and its errors) as it is.
    layout = (40, 8, model.id, dataset.fingerprint())
    kept = create_store(path, *layout, errors=False)
    assert kept.complete and kept.errors
    # The next start reads the errors from the store.
    reopened = atlas_mod.build_atlas(model, dataset, defer_errors=True)
    np.testing.assert_array_equal(reopened.recon_error, errors)


def test_below_the_threshold_the_errors_start_at_once(stored) -> None:
    model, dataset, path = stored
    atlas = atlas_mod.build_atlas(model, dataset, defer_errors=True)
    assert atlas.errors_requested
    assert atlas.recon_error.shape == (40,) and open_store(path).errors


def test_derived_arrays_are_computed_a_slice_at_a_time(stored, monkeypatch) -> None:
    model, dataset, _ = stored
    atlas = atlas_mod.build_atlas(model, dataset, defer_errors=True)
    mu32 = np.asarray(atlas.mu, np.float64)
    lv32 = np.asarray(atlas.logvar, np.float64)
    monkeypatch.setattr(atlas_mod, "ROWS", 7)
    monkeypatch.setattr(kl_mod, "ROWS", 7)
    np.testing.assert_allclose(atlas.scale, mu32.std(0), rtol=1e-5)
    want = kl_mod.kl_terms(mu32, lv32).mean(0)
    np.testing.assert_allclose(kl_mod.kl_per_dim(atlas.mu, atlas.logvar), want, rtol=1e-5)


def test_neighbours_of_a_big_store_are_found_block_by_block(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(500, 6)).astype(np.float16)
    queries = rng.normal(size=(9, 6)).astype(np.float32)
    idx_mem, dist_mem = nearest(latents, queries, k=4)
    monkeypatch.setattr(NeighbourIndex, "IN_MEMORY_MAX", 100)
    monkeypatch.setattr(NeighbourIndex, "BLOCK", 64)
    index = NeighbourIndex(latents)
    assert index.data is None and len(index) == 500  # no copy kept
    idx_blk, dist_blk = index.query(queries, k=4)
    np.testing.assert_array_equal(idx_blk, idx_mem)
    np.testing.assert_allclose(dist_blk, dist_mem, rtol=1e-10)
    # And both are the brute-force answer.
    d = np.linalg.norm(latents.astype(np.float64)[None] - queries[:, None], axis=2)
    np.testing.assert_array_equal(idx_mem, np.argsort(d, axis=1, kind="stable")[:, :4])


def test_the_map_child_reads_a_whole_store_file_and_a_copy_of_anything_else(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mu.npy"
    np.save(path, np.arange(12, dtype=np.float16).reshape(4, 3))
    whole = np.load(path, mmap_mode="r")
    assert latents_file(whole, tmp_path / "t") == path
    (tmp_path / "t").mkdir()
    part = latents_file(whole[1:], tmp_path / "t")  # a slice: its own float32 copy
    assert part != path and np.load(part).dtype == np.float32 and len(np.load(part)) == 3
    os.remove(part)
    in_memory = latents_file(np.ones((2, 3)), tmp_path / "t")
    assert np.load(in_memory).shape == (2, 3)


def test_a_page_gets_a_samples_errors_without_waiting_for_a_big_stores(stored, monkeypatch):
    """views.state.errors_of decodes just the frames asked for while a big store's errors are
    not computed, and gives the same values the store later holds (to float16 μ's precision)."""
    # Lazy: views.state imports Streamlit, needed by this test only.
    from views import state

    model, dataset, _ = stored
    monkeypatch.setattr(atlas_mod, "ERRORS_AUTO_MAX", 10)
    monkeypatch.setattr(state, "ERRORS_AUTO_MAX", 10)
    atlas = atlas_mod.build_atlas(model, dataset, defer_errors=True)
    ids = np.array([3, 17, 31])
    images = np.stack([dataset.image(int(i)) for i in ids])
    quick = state.errors_of(atlas, ids, images)
    assert not atlas.errors_requested  # nothing else was decoded
    np.testing.assert_allclose(quick, atlas.recon_error[ids], rtol=1e-4)
