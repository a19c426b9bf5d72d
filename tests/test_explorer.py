from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common import cache
from explorer import sources
from explorer.atlas import build_atlas, build_projection
from explorer.probes import dim_label_scores, label_columns, probe_scores
from explorer.projection import PCA, fit_projection
from explorer.selection import selected_ids
from frames import ImageFolder, Normalization
from speckle.io import write_dataset
from speckle.mmf import simulate_mmf
from vae import checkpoint as ckpt
from vae.latent_store import open_store
from vae.model import VAE, VAEConfig


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def sim_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "mmf"
    write_dataset(simulate_mmf(96, seed=3, size=32), out)
    return out


def tiny_checkpoint(path: Path, seed: int = 0) -> ckpt.Checkpoint:
    import torch

    torch.manual_seed(seed)
    config = VAEConfig(image_size=32, channels=(4, 8, 8, 8), latent_dim=8, norm_groups=2)
    meta = {
        "model": config.to_dict(),
        "beta": 1.0,
        "recon": "sse",
        "preprocessing": {"image_size": 32, "normalization": Normalization().to_dict()},
    }
    ckpt.save_checkpoint(path, VAE(config), meta)
    return ckpt.load_checkpoint(path)


def test_latent_cache_hits_then_misses_on_new_checkpoint(tmp_path, cache_dir, sim_folder) -> None:
    model_a = tiny_checkpoint(tmp_path / "a", seed=0)
    dataset = ImageFolder(sim_folder, 32, Normalization())
    first = build_atlas(model_a, dataset)
    second = build_atlas(model_a, dataset)
    assert not first.cache_hit and second.cache_hit
    np.testing.assert_array_equal(first.mu, second.mu)
    model_b = tiny_checkpoint(tmp_path / "b", seed=1)
    third = build_atlas(model_b, dataset)
    assert not third.cache_hit
    assert not np.allclose(third.mu, first.mu)
    assert first.mu.shape == (96, 8) and first.recon_error.shape == (96,)
    assert (first.kl >= 0).all()


def test_damaged_cache_is_detected_and_rebuilt(tmp_path, cache_dir, sim_folder) -> None:
    model = tiny_checkpoint(tmp_path / "a")
    dataset = ImageFolder(sim_folder, 32, Normalization())
    good = build_atlas(model, dataset)
    (npz,) = (cache_dir / "latents").glob("*.npz")
    npz.write_bytes(npz.read_bytes()[:-50])  # truncated
    again = build_atlas(model, dataset)
    assert not again.cache_hit
    np.testing.assert_allclose(again.mu, good.mu)
    # Altered in place with the same size: the hash catches it.
    data = bytearray(npz.read_bytes())
    data[-200] ^= 0xFF
    npz.write_bytes(bytes(data))
    assert not build_atlas(model, dataset).cache_hit


def test_deferred_errors_come_after_the_latents_and_then_fill_the_cache(
    tmp_path, cache_dir, sim_folder, monkeypatch
) -> None:
    """The app's first build returns with μ before the reconstruction errors, which a background
    task computes and only then caches; they equal the per-image MSE of decoding μ."""
    import threading

    from vae import inference as inference_mod  # explorer.atlas imports it on use
    from vae.inference import decode

    model = tiny_checkpoint(tmp_path / "a")
    dataset = ImageFolder(sim_folder, 32, Normalization())
    release = threading.Event()
    real = inference_mod.reconstruction_errors

    def held(*args, **kwargs):
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(inference_mod, "reconstruction_errors", held)
    first = build_atlas(model, dataset, defer_errors=True)
    assert first.mu.shape == (96, 8) and not first.errors_ready
    assert not list((cache_dir / "latents").glob("*.npz"))  # nothing cached without the errors
    release.set()
    images = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
    expected = ((decode(model.model, first.mu) - images) ** 2).reshape(96, -1).mean(1)
    np.testing.assert_allclose(first.recon_error, expected, rtol=1e-4, atol=1e-7)
    assert first.errors_ready and first.errors.wait() is not None
    assert list((cache_dir / "latents").glob("*.npz"))
    second = build_atlas(model, dataset, defer_errors=True)
    assert second.cache_hit
    np.testing.assert_array_equal(second.recon_error, first.recon_error)
    np.testing.assert_array_equal(second.mu, first.mu)


def test_failed_deferred_errors_are_reported_and_not_cached(
    tmp_path, cache_dir, sim_folder, monkeypatch
) -> None:
    from vae import inference as inference_mod  # explorer.atlas imports it on use

    def broken(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr(inference_mod, "reconstruction_errors", broken)
    atlas = build_atlas(
        tiny_checkpoint(tmp_path / "a"),
        ImageFolder(sim_folder, 32, Normalization()),
        defer_errors=True,
    )
    atlas.errors.wait(30)
    with pytest.raises(RuntimeError, match="disk went away"):
        _ = atlas.recon_error
    assert not list((cache_dir / "latents").glob("*.npz"))


def test_numpy_pca_matches_scikit_learn_up_to_sign() -> None:
    from sklearn.decomposition import PCA as SkPCA

    from explorer.projection import PCA

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((500, 40)) * np.r_[5, 3, np.full(38, 0.5)] + 7).astype(np.float32)
    ours, theirs = PCA(x).transform(x), SkPCA(2).fit(x).transform(x)
    for i in range(2):
        assert abs(np.corrcoef(ours[:, i], theirs[:, i])[0, 1]) > 0.9999
        np.testing.assert_allclose(np.abs(ours[:, i]), np.abs(theirs[:, i]), rtol=1e-3, atol=1e-3)
    # A fixed sign convention: the same map from a shuffled copy of the data.
    perm = rng.permutation(len(x))
    np.testing.assert_allclose(PCA(x[perm]).transform(x), ours, atol=1e-4)


def test_cache_survives_read_only_directory(tmp_path, monkeypatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        arrays, _, hit = cache.get_or_build(ro / "x", lambda: ({"a": np.arange(3)}, {}))
    finally:
        ro.chmod(0o700)
    assert not hit and list(arrays["a"]) == [0, 1, 2]


def test_pca_streams_a_float16_store_in_slices_with_the_same_axes(monkeypatch) -> None:
    x = np.random.default_rng(2).normal(size=(1000, 6)) * np.arange(1, 7)
    whole = PCA(x.astype(np.float16))
    monkeypatch.setattr(PCA, "ROWS", 64)  # 16 slices
    sliced = PCA(x.astype(np.float16))
    np.testing.assert_allclose(sliced.components_, whole.components_, atol=1e-10)
    np.testing.assert_allclose(
        sliced.transform(x.astype(np.float16)), whole.transform(x.astype(np.float16)), atol=1e-5
    )


def test_umap_on_a_sample_places_the_rest_and_reports_each_step() -> None:
    x = np.random.default_rng(3).normal(size=(300, 5)).astype(np.float32)
    steps = []
    proj = fit_projection(
        x, "umap", n_neighbors=10, max_fit=120, progress=lambda f, t: steps.append((f, t))
    )
    assert proj.coords.shape == (300, 2) and np.isfinite(proj.coords).all()
    assert "fitted on 120 of 300 points" in proj.note
    assert steps[0] == (0.0, "fitting UMAP on 120 of 300 points")
    assert steps[1][1] == "placing the other points with UMAP's transform: 0 of 180"
    assert 0 < steps[1][0] < 1


def test_projection_trustworthiness_on_simulated_set(tmp_path, cache_dir) -> None:
    """UMAP of the demo model's latents keeps neighbourhoods (trustworthiness ≥ 0.8)."""
    from sklearn.manifold import trustworthiness

    demo = ckpt.load_checkpoint(sources.REPO / sources.DEMO_MODEL)
    out = tmp_path / "sim"
    write_dataset(simulate_mmf(600, seed=5), out)
    dataset = ImageFolder(
        out, 64, Normalization.from_dict(demo.config["preprocessing"]["normalization"])
    )
    atlas = build_atlas(demo, dataset)
    proj, hit = build_projection(atlas, "umap", seed=0)
    assert not hit and proj.coords.shape == (600, 2)
    assert trustworthiness(atlas.mu, proj.coords, n_neighbors=10) >= 0.8
    again, hit = build_projection(atlas, "umap", seed=0)
    assert hit and np.array_equal(again.coords, proj.coords)
    # A restored map places new points through their nearest latents: a sample lands near itself.
    placed = again.transform(atlas.mu, atlas.mu[:5])
    spread = np.ptp(proj.coords, axis=0).max()
    assert np.linalg.norm(placed - proj.coords[:5], axis=1).max() < 0.1 * spread
    pca, _ = build_projection(atlas, "pca")
    assert trustworthiness(atlas.mu, pca.coords, n_neighbors=10) > 0.5


def test_selection_maps_points_to_ids() -> None:
    event = {
        "selection": {
            "points": [
                {"customdata": 4},
                {"customdata": [7]},
                {"x": 1.0},
                {"customdata": 4},
                {"customdata": 99},
            ]
        }
    }
    assert selected_ids(event, 10) == [4, 7]
    assert selected_ids(None, 10) == [] and selected_ids({"selection": {}}, 10) == []


def test_dim_label_scores_find_the_dim_that_carries_a_label() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    digit = rng.integers(0, 10, n)
    angle = rng.uniform(-15, 15, n)
    mu = rng.normal(size=(n, 6))
    mu[:, 2] = digit + rng.normal(0, 0.1, n)
    mu[:, 4] = angle / 10 + rng.normal(0, 0.05, n)
    labels = pd.DataFrame({"file": [f"{i}.png" for i in range(n)], "digit": digit, "angle": angle})
    labels.loc[:99, "angle"] = np.nan  # partially labelled
    assert label_columns(labels) == ["digit", "angle"]
    s = dim_label_scores(mu, labels, np.arange(6))  # classes by NMI, continuous by |Spearman|
    assert s.dims[np.argmax(s.score[:, 0])] == 2
    assert s.dims[np.argmax(s.score[:, 1])] == 4
    assert (s.gap > 0.3).all(), s.gap
    probes = probe_scores(mu, labels).set_index("label")
    assert probes.loc["digit", "metric"] == "accuracy" and probes.loc["digit", "score"] > 0.9
    assert probes.loc["angle", "metric"] == "r2" and probes.loc["angle", "score"] > 0.9


def test_paths_cannot_leave_their_roots(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(sources.DATA_ROOT_ENV, str(tmp_path / "data"))
    (tmp_path / "data" / "ok").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "data" / "escape").symlink_to(tmp_path / "outside")
    assert sources.dataset_path("ok") == (tmp_path / "data" / "ok").resolve()
    for bad in ["../outside", "/etc", "escape", "ok/../../outside", ""]:
        with pytest.raises(sources.PathError):
            sources.dataset_path(bad)
    assert "escape" not in sources.list_datasets()
    with pytest.raises(sources.PathError):
        sources.model_path("models/../../etc")
    for bad in ["../x", "a/b", ".hidden", "", "x" * 65]:
        with pytest.raises(sources.PathError):
            sources.safe_name(bad)
    assert sources.safe_name("beta_0.5-run") == "beta_0.5-run"
    assert sources.list_models()[0] == sources.DEMO_MODEL
    assert json.loads((sources.REPO / sources.DEMO_MODEL / "config.json").read_text())["beta"] > 0


def test_the_modal_pairs_simulated_set_redraws_its_training_record() -> None:
    """The dataset picker offers the modal pair's set: new samples (another sample seed)
    through the fibre, perturbations and pattern families its VAE was trained on."""
    names = sources.list_datasets()
    assert names[:2] == [sources.SIMULATED, sources.SIMULATED_MODAL]
    record = sources.simulated_record(sources.SIMULATED_MODAL)
    assert record["fibre"] == "modes" and record["modal"]["temperature"] == [0.0, 30.0]
    assert record["family"] == "digits,dots,bars" and record["digits"] == "train"
    assert sources.simulated_record(sources.SIMULATED) is None
    path = sources.ensure_simulated(24, name=sources.SIMULATED_MODAL)
    assert path == sources.simulated_dir(24, sources.SIMULATED_SEED, sources.SIMULATED_MODAL)
    assert path != sources.simulated_dir(24, sources.SIMULATED_SEED)
    meta = json.loads((path / "simulation.json").read_text())
    for k in ("fibre", "modal", "family", "digits", "fibre_seed", "size", "core", "scale"):
        assert meta[k] == record[k], k
    assert meta["n"] == 24 and meta["seed"] == sources.SIMULATED_SEED != record["seed"]
    labels = pd.read_csv(path / "labels.csv")
    assert labels["temperature"].between(0, 30).all() and labels["temperature"].std() > 3
    assert set(labels["family"]) <= {"digits", "dots", "bars"}
    assert sources.ensure_simulated(24, name=sources.SIMULATED_MODAL) == path  # written once


@pytest.mark.slow
def test_encode_cli_single_and_torchrun_stores_agree(tmp_path, cache_dir, sim_folder) -> None:
    import os
    import subprocess
    import sys

    model = tiny_checkpoint(tmp_path / "m")
    env = os.environ | {
        cache.CACHE_ENV: str(cache_dir),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(sources.REPO),
    }
    args = ["-m", "explorer.encode", "--checkpoint", str(tmp_path / "m"), "--data", str(sim_folder)]
    args += ["--chunk", "7", "--batch-size", "4"]  # several chunks for each of the two ranks
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        *args,
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    stores = sorted((cache_dir / "latents").glob("*.store"))
    assert len(stores) == 1 and open_store(stores[0]).complete
    dataset = ImageFolder(sim_folder, 32, Normalization())
    merged = build_atlas(model, dataset)  # read in place from the store, no encoding
    assert merged.cache_hit and isinstance(merged.mu, np.memmap) and merged.mu.dtype == np.float16
    assert Path(merged.mu.filename) == stores[0] / "mu.npy"
    assert len(merged.recon_error) == len(dataset)
    single = subprocess.run(
        [sys.executable, *args, "--json"],
        env=env | {cache.CACHE_ENV: str(tmp_path / "c2")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    figures = json.loads(single.stdout.strip().splitlines()[-1])
    assert figures["encoded_now"] == figures["frames"] == len(dataset) and figures["complete"]
    assert figures["frames_per_second"] > 0
    env2 = tmp_path / "c2"
    os.environ[cache.CACHE_ENV] = str(env2)
    try:
        reference = build_atlas(model, dataset)
        again = build_atlas(model, dataset)
    finally:
        os.environ[cache.CACHE_ENV] = str(cache_dir)
    assert again.cache_hit and isinstance(again.mu, np.memmap)
    # The store is read in place each time: no second copy of it in the app's cache.
    assert [p.suffix for p in (env2 / "latents").iterdir()] == [".store"]
    np.testing.assert_array_equal(merged.mu, reference.mu)  # float16 from either run
    np.testing.assert_allclose(merged.kl, reference.kl, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_CACHE_HOME places the cache on Linux")
def test_commands_cache_in_the_user_cache_folder_not_where_they_run(tmp_path, sim_folder) -> None:
    """Without SPECKLE_VAE_CACHE, explorer.encode writes its latents into the platform's user
    cache folder, numba's cache goes beside them, and nothing lands in the folder a command is
    run from. SPECKLE_VAE_CACHE still moves the cache."""
    tiny_checkpoint(tmp_path / "m")
    here = tmp_path / "cwd"
    here.mkdir()
    user = tmp_path / "user-cache"
    env = {k: v for k, v in os.environ.items() if k not in (cache.CACHE_ENV, "NUMBA_CACHE_DIR")}
    env |= {"XDG_CACHE_HOME": str(user), "PYTHONPATH": str(sources.REPO), "OMP_NUM_THREADS": "1"}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, *args]
        res = subprocess.run(cmd, cwd=here, env=env | extra, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        return res

    run("-m", "explorer.encode", "--checkpoint", str(tmp_path / "m"), "--data", str(sim_folder))
    assert list((user / "speckle-vae" / "latents").glob("*.store/mu.npy"))
    numba = run("-c", "from common import cache; print(cache.numba_cache_dir())")
    assert Path(numba.stdout.strip()) == user / "speckle-vae" / "numba"
    root = "from common import cache; print(cache.cache_root())"
    moved = run("-c", root, SPECKLE_VAE_CACHE=str(tmp_path / "mine"))
    assert Path(moved.stdout.strip()) == tmp_path / "mine"
    assert list(here.iterdir()) == []


def test_cached_atlas_opens_without_torch(tmp_path, cache_dir, sim_folder) -> None:
    """What a second start does: a lazily opened checkpoint and a cached atlas and map, in a new
    process that never imports torch, with the same arrays as the build."""
    import os
    import subprocess
    import sys

    model = tiny_checkpoint(tmp_path / "m")
    built = build_atlas(model, ImageFolder(sim_folder, 32, Normalization()))
    pca, _ = build_projection(built, "pca")
    code = """
import sys, numpy as np
from explorer.atlas import build_atlas, build_projection
from vae.checkpoint import load_checkpoint
from frames import ImageFolder, Normalization
ck = load_checkpoint(sys.argv[1], lazy=True)
atlas = build_atlas(ck, ImageFolder(sys.argv[2], 32, Normalization()))
proj, hit = build_projection(atlas, "pca")
np.savez(sys.argv[3], mu=atlas.mu, err=atlas.recon_error, coords=proj.coords)
print(atlas.cache_hit, hit, atlas.active_units, "torch" in sys.modules)
"""
    env = os.environ | {cache.CACHE_ENV: str(cache_dir), "PYTHONPATH": str(sources.REPO)}
    out = tmp_path / "opened.npz"
    res = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m"), str(sim_folder), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["True", "True", str(built.active_units), "False"]
    opened = np.load(out)
    np.testing.assert_array_equal(opened["mu"], built.mu)
    np.testing.assert_array_equal(opened["err"], built.recon_error)
    np.testing.assert_array_equal(opened["coords"], pca.coords)


def test_cuml_is_used_for_umap_where_it_is_installed(monkeypatch) -> None:
    """The optional GPU path, as far as a CPU allows: with a module named cuml.manifold that
    offers UMAP (cuML's API: fit, embedding_, transform), the map is fitted by it; without,
    by umap-learn. Both record which."""
    import sys
    import types

    calls = []

    class FakeCumlUMAP:
        def __init__(self, **settings) -> None:
            calls.append(settings)

        def fit(self, x):
            self.embedding_ = np.asarray(x[:, :2], np.float32)
            return self

        def transform(self, x):
            return np.asarray(x[:, :2], np.float32)

    manifold = types.ModuleType("cuml.manifold")
    manifold.UMAP = FakeCumlUMAP
    monkeypatch.setitem(sys.modules, "cuml", types.ModuleType("cuml"))
    monkeypatch.setitem(sys.modules, "cuml.manifold", manifold)
    x = np.random.default_rng(4).normal(size=(50, 4)).astype(np.float32)
    proj = fit_projection(x, "umap", n_neighbors=10, max_fit=30)
    assert proj.params["backend"] == "cuml" and "n_jobs" not in calls[0]
    np.testing.assert_array_equal(proj.coords, x[:, :2])
    monkeypatch.delitem(sys.modules, "cuml.manifold")
    monkeypatch.setitem(sys.modules, "cuml", None)  # not installed: import raises
    assert fit_projection(x, "umap", n_neighbors=10).params["backend"] == "umap-learn"
