"""The streamed latent store: layout checks, chunk-by-chunk writes, and an encode that stops and
resumes where it stopped with the same result as one that never stopped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from frames import ImageFolder, Normalization
from speckle.io import write_dataset
from speckle.mmf import simulate_mmf
from tests.test_explorer import tiny_checkpoint
from vae.latent_store import StoreError, create_store, open_store
from vae.latents import encode_latents, encode_to_store


def test_chunks_are_written_marked_and_read_back(tmp_path: Path) -> None:
    store = create_store(tmp_path / "s.store", 10, 3, "ck", "fp", errors=False, chunk=4)
    assert (store.n_chunks, store.rows_done(), store.complete) == (3, 0, False)
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(10, 3)).astype(np.float32)
    for i in (2, 0):  # any order: each chunk is marked on its own
        rows = store.chunk_rows(i)
        arrays = {"mu": mu[rows], "logvar": -mu[rows], "kl": np.ones(rows.stop - rows.start)}
        store.write_chunk(i, arrays)
    again = open_store(tmp_path / "s.store")
    assert again.done().tolist() == [True, False, True] and again.rows_done() == 6
    with pytest.raises(StoreError, match="6 of 10 rows written"):
        again.load()
    np.testing.assert_allclose(again.array("mu")[8:], mu[8:], atol=1e-2)  # float16
    assert again.array("mu").dtype == np.float16


def test_a_store_of_another_model_is_replaced_and_a_damaged_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.store"
    store = create_store(path, 5, 2, "ck", "fp", errors=True, chunk=8)
    store.write_chunk(
        0,
        {k: np.zeros((5, 2)) for k in ("mu", "logvar")}
        | {
            "kl": np.zeros(5),
            "recon_error": np.zeros(5),
        },
    )
    assert create_store(path, 5, 2, "ck", "fp", errors=True, chunk=8).complete  # reused
    assert not create_store(path, 5, 2, "other", "fp", errors=True, chunk=8).complete
    (path / "mu.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(StoreError, match=r"mu\.npy: unreadable"):
        open_store(path)
    (path / "meta.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(StoreError, match="not a speckle-vae-latent-store"):
        open_store(path)
    with pytest.raises(StoreError, match="chunk ≥ 1"):
        create_store(path, 5, 2, "ck", "fp", errors=True, chunk=0)


class Stop(Exception):
    pass


def test_an_encode_stopped_midway_resumes_and_matches_one_that_never_stopped(
    tmp_path: Path,
) -> None:
    data = tmp_path / "mmf"
    write_dataset(simulate_mmf(50, seed=5, size=32), data)
    model = tiny_checkpoint(tmp_path / "m")
    dataset = ImageFolder(data, 32, Normalization())
    layout = (len(dataset), 8, model.id, dataset.fingerprint())
    store = create_store(tmp_path / "a.store", *layout, errors=True, chunk=16)
    seen = []

    def stop_after_two_chunks(k: int) -> None:
        seen.append(k)
        if sum(seen) >= 40:  # batches of 8: the third chunk is in flight
            raise Stop

    with pytest.raises(Stop):
        encode_to_store(model, dataset, store, batch_size=8, progress=stop_after_two_chunks)
    assert store.done().tolist() == [True, True, False, False]
    # The rerun encodes only what was missing: the 18 frames of the last two chunks.
    assert encode_to_store(model, dataset, store, batch_size=8) == 18
    assert store.complete
    whole = create_store(tmp_path / "b.store", *layout, errors=True, chunk=16)
    assert encode_to_store(model, dataset, whole, batch_size=8) == 50
    resumed, straight = store.load(), whole.load()
    for k in ("mu", "logvar", "kl", "recon_error"):
        np.testing.assert_array_equal(resumed[k], straight[k])
    # And the store holds what the in-memory encode gives, to float16's precision.
    memory = encode_latents(model, dataset)
    np.testing.assert_allclose(straight["mu"], memory["mu"], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(straight["recon_error"], memory["recon_error"], rtol=1e-4)
    np.testing.assert_allclose(straight["kl"], memory["kl"], rtol=1e-4, atol=1e-4)
