"""The app's cached resources and session state: the loaded models, datasets, atlases and maps,
and which of them the session's sidebar has chosen. All Streamlit caching lives here, keyed by
checkpoint id and dataset fingerprint."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from common import cache
from explorer import images, map_process, serving, sources
from explorer.atlas import ERRORS_AUTO_MAX, Atlas, build_atlas, build_projection
from explorer.projection import Projection
from explorer.tasks import Task
from frames import ImageFolder, Normalization, spaced_indices
from speckle.lit_region import LitRegion, dataset_region
from vae.checkpoint import Checkpoint, CheckpointError, load_checkpoint

if TYPE_CHECKING:
    from explorer.generate import Served  # the diffusion modules load on the Generate page only

# UMAP is fitted in a child process (its fit holds the GIL: explorer.map_process) at this nice
# value above the server's, so that pages and the browser showing them come first.
BACKGROUND_NICE = 10


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_model(path: str, mtime: float) -> Checkpoint:
    # Lazily: the config and the weights' hash now; torch and the module on first use
    # (explorer.serving.model), so a cached atlas's map is drawn before torch is imported.
    return load_checkpoint(path, device="auto", lazy=True)


def _model_files(name: str) -> tuple[Path, float]:
    path = sources.model_path(name)
    config = (
        path / "config.json"
        if (path / "config.json").exists()
        else path / "checkpoint" / "config.json"
    )
    return path, config.stat().st_mtime


def load_model(name: str) -> Checkpoint:
    path, mtime = _model_files(name)
    return _load_model(str(path), mtime)


# A million-frame recording's index takes tens of seconds to read: say so while it does.
@st.cache_resource(
    show_spinner="opening the dataset: reading its frame index and labels", max_entries=8
)
def _load_dataset(path: str, size: int, norm: tuple) -> ImageFolder:
    normalization = Normalization.from_dict(dict(norm))
    return ImageFolder(path, size, normalization, scan_record=cache.scan_record(path))


def load_dataset(name: str, checkpoint: Checkpoint) -> ImageFolder:
    if name in sources.SIMULATED_SETS:
        path = sources.dataset_path(name)
        if not (path / "labels.csv").is_file():  # first start only: no bar on every rerun
            bar = st.progress(0.0, "preparing the simulated dataset (first start only)")
            path = sources.ensure_simulated(progress=lambda f, msg: bar.progress(f, msg), name=name)
            bar.empty()
    else:
        path = sources.dataset_path(name)
    norm = checkpoint.config["preprocessing"]["normalization"]
    return _load_dataset(str(path), checkpoint.model_config.image_size, tuple(sorted(norm.items())))


@st.cache_resource(show_spinner=False, max_entries=8)
def _atlas(checkpoint_id: str, dataset_fp: str, _checkpoint: Checkpoint, _dataset) -> Atlas:
    bar = st.progress(0.0, "encoding the dataset")
    atlas = build_atlas(
        _checkpoint,
        _dataset,
        progress=lambda f, msg: bar.progress(min(f, 1.0), msg),
        defer_errors=True,
    )
    bar.empty()
    return atlas


@st.cache_resource(show_spinner=False, max_entries=16)
def _projection_task(checkpoint_id: str, dataset_fp: str, params: tuple, _atlas: Atlas) -> Task:
    """A map computed in a background thread shared by every session; pages show the PCA map
    until it is ready. UMAP is fitted in a child process at lower priority (its fit holds the
    GIL: see explorer.map_process), not before the page asking for it is sent."""
    method, n_neighbors, min_dist, metric = params
    if method == "pca":
        return Task("map-pca", lambda: build_projection(_atlas, "pca")).start()
    return Task(
        f"map-{method}",
        lambda: map_process.build_projection(
            _atlas, method, n_neighbors, min_dist, metric, nice=BACKGROUND_NICE
        ),
    ).start()


def recon_errors(atlas: Atlas) -> np.ndarray:
    """The atlas's reconstruction errors, waiting under a spinner while a first build still
    computes them in the background (build_atlas's defer_errors)."""
    if atlas.errors_ready:
        return atlas.recon_error
    with st.spinner("computing the reconstruction errors of the dataset (first start only)"):
        return atlas.recon_error


def errors_of(atlas: Atlas, ids: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The reconstruction errors of the frames `ids` (their preprocessed `images` given): the
    atlas's, or, for a big store whose errors are not computed, these frames' own decodes, so
    that a page does not wait for a million of them."""
    if atlas.errors_ready or len(atlas.mu) <= ERRORS_AUTO_MAX:
        return recon_errors(atlas)[ids]
    recon = serving.decode_interactive(serving.model(atlas.checkpoint), atlas.mu[ids])
    return ((recon - images) ** 2).reshape(len(ids), -1).mean(1)


def atlas_for(checkpoint: Checkpoint, dataset_name: str) -> Atlas:
    """A model's atlas on a dataset, preprocessed the model's way (loaded once per process)."""
    dataset = load_dataset(dataset_name, checkpoint)
    return _atlas(checkpoint.id, dataset.fingerprint(), checkpoint, dataset)


def current() -> tuple[Checkpoint, ImageFolder, Atlas]:
    """The model, dataset and atlas chosen in the sidebar, checked against the model's files and
    the session's last answer (app.py asks first in every run, then the page)."""
    key = (
        st.session_state.get("model", sources.DEMO_MODEL),
        st.session_state.get("dataset", sources.SIMULATED),
    )
    # The session's last answer stands while the names and the model's files are the same and
    # Streamlit's caches still hold it: resolving it through them again costs a millisecond of
    # argument hashing on every rerun, slider moves included. Weak references, so that the
    # caches' limits still bound what stays in memory.
    path, mtime = _model_files(key[0])
    last = st.session_state.get("_current")
    result = None
    if last is not None and last[0] == (key, str(path), mtime):
        result = tuple(ref() for ref in last[1])
    if result is None or any(r is None for r in result):
        checkpoint = _load_model(str(path), mtime)
        atlas = atlas_for(checkpoint, key[1])
        result = (checkpoint, atlas.dataset, atlas)
        st.session_state["_current"] = ((key, str(path), mtime), [weakref.ref(r) for r in result])
    return result


def projection(
    atlas: Atlas,
    method: str = "umap",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "euclidean",
) -> tuple[Projection, str]:
    """The requested map if ready, else the PCA map, with a status line for the page."""
    method = method.lower()  # the Atlas page's radio says "UMAP"/"PCA"
    params = (method, n_neighbors, min_dist, metric)
    # A finished map is remembered by the session (weakly, like current()): asking Streamlit's
    # cache hashes the arguments, half a millisecond of every slider move.
    done = st.session_state.setdefault("_maps", {})
    hit = done.get(params)
    if hit is not None and hit[0]() is atlas and (proj := hit[1]()) is not None:
        return proj, ""
    task = _projection_task(atlas.checkpoint.id, atlas.dataset.fingerprint(), params, atlas)
    if task.done and task.error is None:
        proj, _ = task.result
        done[params] = (weakref.ref(atlas), weakref.ref(proj))
        return proj, ""
    pca = _projection_task(
        atlas.checkpoint.id, atlas.dataset.fingerprint(), ("pca", 15, 0.1, "euclidean"), atlas
    )
    if not pca.done:  # a million points take seconds
        with st.spinner(f"fitting the PCA map of {len(atlas.mu):,} points"):
            pca.wait()
    pca_proj, _ = pca.wait()
    if task.error:
        return pca_proj, f"{method.upper()} failed ({task.error}); showing PCA"
    step = map_process.fit_progress(atlas, *params)
    doing = f": {step[1]} ({step[0]:.0%})" if step else ""
    return (
        pca_proj,
        f"{method.upper()} is being computed in the background ({task.elapsed:.0f} s so far"
        f"{doing}); showing PCA meanwhile",
    )


@st.cache_data(show_spinner=False, max_entries=32)
def _grid(
    checkpoint_id: str,
    dataset_fp: str,
    z0: bytes,
    dims: tuple[int, ...],
    steps: int,
    _checkpoint: Checkpoint,
    _atlas: Atlas,
) -> bytes:
    z = np.frombuffer(z0, np.float32)
    return images.traversal_grid(serving.model(_checkpoint), z, dims, steps, _atlas.scale)


def traversal_grid(
    checkpoint: Checkpoint, atlas: Atlas, z0: np.ndarray, dims: tuple[int, ...], steps: int
) -> bytes:
    """explorer.images.traversal_grid, cached per model, dataset, start, dims and steps. Show it
    with st.image's default width ("content": its own width, at most the column's, scaled by the
    browser): an int width smaller than the image makes Streamlit resize and re-encode it on
    every rerun."""
    z0 = np.ascontiguousarray(z0, np.float32).tobytes()
    return _grid(checkpoint.id, atlas.dataset.fingerprint(), z0, dims, steps, checkpoint, atlas)


def switch_model(name: str) -> None:
    """Make every page use another model. The sidebar's picker owns the "model" key and is
    already drawn in this run, so the change is applied at the top of the next run."""
    st.session_state["model_pending"] = name
    refresh_choices()
    st.rerun()


@st.cache_data(ttl=2, show_spinner=False)
def choices() -> tuple[list[str], list[str]]:
    """The models and datasets on offer, scanned at most every 2 s rather than on every slider
    move; a finished retraining run shows up in the picker within that."""
    return sources.list_models(), sources.list_datasets()


def refresh_choices() -> None:
    """Rescan models and datasets now: this session just wrote or switched to a new one."""
    choices.clear()


PROBE_SAMPLES = 4096  # the Model page's probes and PCA baselines read at most this many images
REGION_SAMPLES = 256  # frames a dataset's lit region is estimated from


@st.cache_resource(show_spinner="reading the dataset's images", max_entries=4)
def _arrays(
    dataset_fp: str, limit: int, _dataset
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    n = len(_dataset)
    idx = spaced_indices(n, limit)
    images = np.stack([_dataset.image(int(i)) for i in idx])
    patterns = [_dataset.pattern(int(i)) for i in idx]
    pats = np.stack(patterns) if patterns and all(p is not None for p in patterns) else None
    return idx, images, pats


def dataset_arrays(
    dataset, limit: int = PROBE_SAMPLES
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Up to `limit` of a dataset's preprocessed images, evenly spaced: (their indices, the images
    (n, H, W), and their input patterns when every one has one). What the probes' PCA baselines
    and the lit region are computed from; a big dataset is never loaded whole."""
    return _arrays(dataset.fingerprint(), limit, dataset)


@st.cache_resource(show_spinner=False, max_entries=8)
def _region(dataset_fp: str, size: int, _dataset) -> LitRegion:
    _, images, _ = dataset_arrays(_dataset, REGION_SAMPLES)
    return dataset_region(getattr(_dataset, "root", None), size, images)


def lit_region(dataset, size: int) -> LitRegion:
    """The dataset's lit region at the model's size: where speckle statistics are taken."""
    return _region(dataset.fingerprint(), size, dataset)


@st.cache_data(show_spinner=False, max_entries=32)
def _rd(checkpoint_id: str, dataset_fp: str, mask_source: str, _atlas: Atlas, _mask) -> dict:
    # Lazy: explorer.compare brings torch (vae.evaluate), kept off the cached open.
    from explorer.compare import rate_distortion

    return rate_distortion(_atlas, mask=_mask)


def rate_distortion_of(atlas: Atlas, region: LitRegion) -> dict:
    """A model's rate–distortion point on a dataset, measured once per model and dataset."""
    return _rd(atlas.checkpoint.id, atlas.dataset.fingerprint(), region.source, atlas, region.mask)


@st.cache_data(ttl=2, show_spinner=False)
def generator_paths(vae_id: str) -> list[str]:
    """The generators made for this VAE (explorer.generate.matching_generators: shipped first),
    rescanned at most every 2 s like choices(): a generator trained meanwhile shows up within
    that."""
    # Lazy: the diffusion modules load on the Generate page only (torch; cached open).
    from explorer.generate import matching_generators

    return [str(p) for p in matching_generators(vae_id)]


@st.cache_resource(show_spinner=False, max_entries=2)
def _generator(path: str, mtime: float, vae_id: str, _vae: Checkpoint) -> Served:
    # Lazy: as in generator_paths.
    from explorer.generate import load

    serving.model(_vae)  # built the app's way first (its worker's torch set-up; see serving)
    return load(path, _vae)


def generator(path: str, vae: Checkpoint) -> Served:
    """The loaded generator for a VAE, once per process per generator, its config's mtime and
    the VAE: loading and warming it costs seconds."""
    try:
        mtime = (Path(path) / "config.json").stat().st_mtime
    except OSError as e:  # a training run swapping its checkpoint in: the next rerun finds it
        raise CheckpointError(f"{path}: config.json cannot be read now ({e.strerror})") from None
    return _generator(str(path), mtime, vae.id, vae)
