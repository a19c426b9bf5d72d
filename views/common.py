"""Shared UI glue: the sidebar pickers, cached loaders and small widgets. All Streamlit caching
lives here, keyed by checkpoint id and dataset fingerprint."""

from __future__ import annotations

import gc
import io
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from explorer import cache, sources
from explorer.atlas import Atlas, build_atlas, build_projection
from explorer.latent_ops import tile, traverse
from explorer.projection import Projection
from explorer.tasks import Task
from vae import interactive
from vae.checkpoint import Checkpoint, load_checkpoint
from vae.data import ImageFolder, Normalization

T = TypeVar("T")

IMAGE_WIDTH = 160
GRID_WIDTH = 900
GRID_HEIGHT = 1200
# Background work (UMAP fits, a first build's reconstruction errors) runs at this nice value
# above the server's, so that pages and the browser showing them come first on a small machine.
BACKGROUND_NICE = 10


# Each opened checkpoint's background preparation: its model built (torch imported) and its ONNX
# Runtime decoder (1.4 s of a first start on 2 cores), after the page that opened it is sent.
# A cached atlas needs neither for its map; a page that needs the model sooner builds it then.
decoder_builds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_frozen_with_torch = False


def _prepare(model):
    """What every model the app loads goes through once, on whichever thread first needs it."""
    global _frozen_with_torch
    from vae.inference import for_interactive_use, start_interactive_thread

    # Before this thread or any other makes its first torch call with the model (see there).
    start_interactive_thread()
    model = for_interactive_use(model, fast=False)
    if not _frozen_with_torch:  # torch's objects too, once it is imported (see the module's end)
        _frozen_with_torch = True
        gc.freeze()
    return model


def _build_decoder(ref: weakref.ref) -> bool:
    from vae.inference import build_fast_decoder

    checkpoint = ref()
    return checkpoint is not None and build_fast_decoder(checkpoint.model)


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_model(path: str, mtime: float) -> Checkpoint:
    # Lazily: the config and the weights' hash now; torch and the module on first use.
    checkpoint = load_checkpoint(path, device="auto", lazy=True)
    checkpoint.prepare = _prepare
    # Weakly: the task is the value of a weak-keyed entry for the checkpoint, and a strong
    # reference from it would keep an evicted model alive.
    ref = weakref.ref(checkpoint)
    decoder_builds[checkpoint] = Task("model", lambda: _build_decoder(ref), nice=BACKGROUND_NICE,
                                      defer=True).start()  # fmt: skip
    return checkpoint


def decoder_status(checkpoint: Checkpoint) -> str:
    """Which implementation serves this model's single-latent decodes, for the model card."""
    from vae.inference import decoder_backend

    task = decoder_builds.get(checkpoint)
    backend = decoder_backend(checkpoint.model)
    if task is not None and not task.done:
        return f"{backend} until the ONNX Runtime decoder, being built in the background, is ready"
    if task is not None and task.error:
        return f"{backend} (the ONNX Runtime decoder could not be built: {task.error})"
    return backend


def wait_for_decoders(timeout: float = 60.0) -> None:
    """Until every loaded model's ONNX Runtime decoder is built (benchmarks, tests)."""
    for task in list(decoder_builds.values()):
        task.wait(timeout)


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


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_dataset(path: str, size: int, norm: tuple) -> ImageFolder:
    normalization = Normalization.from_dict(dict(norm))
    return ImageFolder(path, size, normalization, scan_record=cache.scan_record(path))


def load_dataset(name: str, checkpoint: Checkpoint) -> ImageFolder:
    if name == sources.SIMULATED:
        path = sources.dataset_path(name)
        if not (path / "labels.csv").is_file():  # first start only: no bar on every rerun
            bar = st.progress(0.0, "preparing the simulated dataset (first start only)")
            path = sources.ensure_simulated(progress=lambda f, msg: bar.progress(f, msg))
            bar.empty()
    else:
        path = sources.dataset_path(name)
    norm = checkpoint.config["preprocessing"]["normalization"]
    return _load_dataset(str(path), checkpoint.model_config.image_size, tuple(sorted(norm.items())))


@st.cache_resource(show_spinner=False, max_entries=8)
def _atlas(checkpoint_id: str, dataset_fp: str, _checkpoint: Checkpoint, _dataset) -> Atlas:
    bar = st.progress(0.0, "encoding the dataset")
    atlas = build_atlas(_checkpoint, _dataset, progress=lambda f, msg: bar.progress(min(f, 1.0), msg),
                        defer_errors=True, background_nice=BACKGROUND_NICE)  # fmt: skip
    bar.empty()
    return atlas


@st.cache_resource(show_spinner=False, max_entries=16)
def _projection_task(checkpoint_id: str, dataset_fp: str, params: tuple, _atlas: Atlas) -> Task:
    """UMAP runs in a background thread shared by every session (the first fit compiles numba
    for ~25 s on 2 cores); pages show the PCA map until it is ready."""
    method, n_neighbors, min_dist, metric = params
    slow = method != "pca"  # UMAP: lower priority, and not before the page asking for it is sent
    return Task(f"map-{method}", lambda: build_projection(_atlas, method, n_neighbors, min_dist, metric),
                nice=BACKGROUND_NICE if slow else 0, defer=slow).start()  # fmt: skip


def recon_errors(atlas: Atlas) -> np.ndarray:
    """The atlas's reconstruction errors, waiting under a spinner while a first build still
    computes them in the background (build_atlas's defer_errors)."""
    if atlas.errors_ready:
        return atlas.recon_error
    with st.spinner("computing the reconstruction errors of the dataset (first start only)"):
        return atlas.recon_error


def atlas_for(checkpoint: Checkpoint, dataset_name: str) -> Atlas:
    """A model's atlas on a dataset, preprocessed the model's way (loaded once per process)."""
    dataset = load_dataset(dataset_name, checkpoint)
    return _atlas(checkpoint.id, dataset.fingerprint(), checkpoint, dataset)


# The answer of current() for the script run going on in this thread. A rerun may reuse the
# thread, so app.py asks with refresh=True at the top of every run.
_this_run = threading.local()


def current(refresh: bool = False) -> tuple[Checkpoint, ImageFolder, Atlas]:
    """The model, dataset and atlas chosen in the sidebar. app.py asks first in every run
    (refresh=True: checked against the model's files and the session's last answer); the
    page's question in the same run gets that answer."""
    key = (st.session_state.get("model", sources.DEMO_MODEL),
           st.session_state.get("dataset", sources.SIMULATED))  # fmt: skip
    memo = getattr(_this_run, "current", None)
    if not refresh and memo is not None and memo[0] == key:
        return memo[1]
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
    _this_run.current = (key, result)
    return result


def projection(atlas: Atlas, method: str = "umap", n_neighbors: int = 15, min_dist: float = 0.1,
               metric: str = "euclidean") -> tuple[Projection, str]:  # fmt: skip
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
    pca_proj, _ = pca.wait()
    if task.error:
        return pca_proj, f"{method.upper()} failed ({task.error}); showing PCA"
    return (
        pca_proj,
        f"{method.upper()} is being computed in the background ({task.elapsed:.0f} s so far); showing PCA meanwhile",
    )


def switch_model(name: str) -> None:
    """Make every page use another model. The sidebar's picker owns the "model" key and is
    already drawn in this run, so the change is applied at the top of the next run."""
    st.session_state["model_pending"] = name
    refresh_choices()
    st.rerun()


@st.cache_data(ttl=2, show_spinner=False)
def _choices() -> tuple[list[str], list[str]]:
    """Scanned at most every 2 s rather than on every slider move; a finished retraining run
    shows up in the picker within that."""
    return sources.list_models(), sources.list_datasets()


def refresh_choices() -> None:
    """Rescan models and datasets now: this session just wrote or switched to a new one."""
    _choices.clear()


def sidebar() -> None:
    if "model_pending" in st.session_state:
        st.session_state["model"] = st.session_state.pop("model_pending")
    models, datasets = _choices()
    st.sidebar.selectbox("Model", models, key="model", help="Checkpoints under models/ and runs/")
    st.sidebar.selectbox("Dataset", datasets, key="dataset",
                         help=f"The simulated set, or a folder under {sources.data_root()}")  # fmt: skip


def model_summary(checkpoint: Checkpoint, dataset, atlas: Atlas) -> None:
    c = checkpoint.config
    preset = c.get("train", {}).get("preset", "?")
    st.sidebar.markdown(
        f"**β = {c.get('beta')}** ({c.get('recon')} reconstruction)  \n"
        f"preset `{preset}`, {checkpoint.model_config.image_size}² px, dz {checkpoint.model_config.latent_dim}  \n"
        f"normalization: per-image `{c['preprocessing']['normalization']['mode']}`  \n"
        f"dataset: {len(dataset)} images  \n"
        f"**{atlas.active_units} active units** of {checkpoint.model_config.latent_dim}  \n"
        f"id `{checkpoint.id[:12]}`"
    )
    for note in getattr(dataset, "notes", [])[:3]:
        st.sidebar.caption(note)


# Streamlit fades every element of a rerunning fragment towards opacity 0.33 (a 1 s CSS
# transition after a 0.5 s delay) and back, and fades a focused slider's tick bar in and out.
# A slider move reruns in well under the delay, so the fade is never seen, but each move still
# starts ~10 transitions that the browser animates and composites: measured in Chromium on a
# bare page of the Traverse widgets, 155 → 100 ms of browser CPU a move (renderer 110 → 77 ms,
# GPU process 25 → 5.5 ms). Live controls should not flicker either; the status widget still
# says when the server is working. Images in it are enlarged by the browser without smoothing,
# so that model-sized PNGs can be sent (see show_image).
LIVE_CSS = (
    "<style>.st-key-{key} [data-testid=stElementContainer]{{transition:none!important;"
    "opacity:1!important}}.st-key-{key} [data-testid=stSliderTickBar]{{transition:none!important}}"
    ".st-key-{key} [data-testid=stImage] img{{image-rendering:pixelated}}</style>"
)


def live_style(key: str) -> None:
    """No stale fade inside the container keyed `key` (controls that rerun on every move). Drawn
    outside the fragment that holds that container, so a move does not resend it."""
    st.html(LIVE_CSS.format(key=key))


def to_png(img: np.ndarray, scale: int = 1) -> bytes:
    """Lossless PNG of a [0, 1] gray (H, W) image, enlarged `scale`× with
    nearest-neighbour so that speckle grains stay sharp. Fast compression: these are made on
    every slider move and sent over loopback or a LAN."""
    im = Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def show_image(
    img: np.ndarray,
    caption: str,
    width: int = IMAGE_WIDTH,
    normalize: bool = False,
    enlarge: bool = True,
) -> None:
    """A model-sized image as a lossless PNG (Streamlit would send an array as JPEG, whose
    blocking artefacts look like speckle), enlarged server-side by a whole factor so the browser
    barely rescales it. `enlarge=False` sends it at its own size, for a live container whose
    CSS enlarges it pixelated (LIVE_CSS): a sixth of the encoding time (0.68 → 0.11 ms)."""
    img = np.asarray(img, np.float32)
    if normalize and img.max() > 0:
        img = img / img.max()
    png = to_png(img, scale=max(1, width // img.shape[-1]) if enlarge else 1)
    st.image(png, caption=caption, width=width, output_format="PNG")


class LRU:
    """A small thread-safe LRU of values computed from a hashable key. For what a page asks for
    on every rerun: Streamlit's caches hash their arguments generically, a quarter of a
    millisecond a call, where a tuple of ids and bytes hashes in microseconds."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize, self._items, self._lock = maxsize, OrderedDict(), threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # outside the lock: two sessions may both build it, nobody waits
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_grids: LRU = LRU(32)
_kl_specs: LRU = LRU(16)


def _make_grid(checkpoint: Checkpoint, atlas: Atlas, z0: np.ndarray, dims: tuple[int, ...],
               steps: int) -> bytes:  # fmt: skip
    from vae.inference import decode

    values = np.linspace(-3, 3, steps)
    frames = decode(checkpoint.model, traverse(z0, list(dims), values, "sigma", atlas.scale))
    h, w = frames.shape[-2:]
    # Enlarged to about GRID_WIDTH wide, but never past GRID_HEIGHT tall: 64 dims × 3 steps
    # would otherwise make a 16k-pixel-tall image, and the cache holds 32 of them.
    scale = max(1, min(GRID_WIDTH // (steps * w), GRID_HEIGHT // (len(dims) * h)))
    return to_png(tile(frames, len(dims), steps), scale=scale)


def traversal_grid(checkpoint: Checkpoint, atlas: Atlas, z0: np.ndarray, dims: tuple[int, ...],
                   steps: int) -> bytes:  # fmt: skip
    """The dims × steps traversal grid (−3σ … +3σ) from z0, as a PNG enlarged by a whole factor
    to at most GRID_WIDTH pixels wide and GRID_HEIGHT tall (never below the model's size). Show it with st.image's default width ("content": its
    own width, at most the column's, scaled by the browser): an int width smaller than the
    image makes Streamlit resize and re-encode it on every rerun."""
    z0 = np.ascontiguousarray(z0, np.float32)
    key = (checkpoint.id, atlas.dataset.fingerprint(), z0.tobytes(), dims, steps)
    return _grids.get(key, lambda: _make_grid(checkpoint, atlas, z0, dims, steps))


def _make_kl_bar_spec(atlas: Atlas, dims: tuple[int, ...]) -> dict:
    top = atlas.dim_order[:64]
    values = [{"dim": f"z{d}", "kl": float(atlas.kl_per_dim[d]), "slider": d in dims} for d in top]
    return {
        "height": 240,
        "layer": [
            {"data": {"values": values}, "mark": "bar",
             "encoding": {"x": {"field": "dim", "type": "nominal", "sort": None, "title": None},
                          "y": {"field": "kl", "type": "quantitative", "title": "mean KL (nats)"},
                          "color": {"field": "slider", "type": "nominal", "title": "slider",
                                    "scale": {"domain": [True, False], "range": ["crimson", "steelblue"]}},
                          "tooltip": [{"field": "dim"}, {"field": "kl", "format": ".3f"}]}},
            {"data": {"values": [{"y": 0.01}]}, "mark": {"type": "rule", "strokeDash": [4, 4], "color": "grey"},
             "encoding": {"y": {"field": "y", "type": "quantitative"}}},
        ],
    }  # fmt: skip


def kl_bar_spec(atlas: Atlas, dims: tuple[int, ...]) -> dict:
    """Vega-Lite bar chart of the top 64 dims' mean KL, slider dims in red, with the active-unit
    threshold. Vega-Lite rather than plotly: the spec is sent as is, where a plotly figure is
    copied and validated on every rerun."""
    key = (atlas.checkpoint.id, atlas.dataset.fingerprint(), dims)
    return _kl_specs.get(key, lambda: _make_kl_bar_spec(atlas, dims))


def map_figure(coords: np.ndarray, color: np.ndarray | None, color_name: str, hover: list[str],
               height: int = 520) -> go.Figure:  # fmt: skip
    """A WebGL scatter, interactive at 50k points; customdata carries each sample's id."""
    categorical = color is not None and color.dtype.kind in "OUSb"
    fig = go.Figure()
    ids = np.arange(len(coords))
    if categorical:
        for value in sorted(set(color.tolist()), key=str):
            m = color == value
            fig.add_trace(go.Scattergl(x=coords[m, 0], y=coords[m, 1], mode="markers", name=str(value),
                                       customdata=ids[m], text=np.asarray(hover, dtype=object)[m],
                                       hovertemplate="%{text}<extra></extra>", marker={"size": 5}))  # fmt: skip
    else:
        marker = {"size": 5}
        if color is not None:
            marker |= {"color": color, "colorscale": "Viridis", "showscale": True,
                       "colorbar": {"title": {"text": color_name}}}  # fmt: skip
        fig.add_trace(go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", name="samples",
                                   customdata=ids, text=hover, hovertemplate="%{text}<extra></extra>",
                                   marker=marker, showlegend=False))  # fmt: skip
    # A top margin for the toolbar, which would otherwise cover the legend's title.
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, dragmode="select",
                      legend={"title": {"text": color_name}}, xaxis={"showticklabels": False},
                      yaxis={"showticklabels": False, "scaleanchor": "x"})  # fmt: skip
    return fig


# Backdrops of the marker map, one per coordinate array (a cached projection's), found by
# identity: hashing 50k coordinates on every slider move would cost more than drawing the map.
_backdrops: dict[int, tuple[weakref.ref, int, np.ndarray, np.ndarray, np.ndarray]] = {}

MAP_PALETTE = [255, 255, 255, 150, 150, 150, 220, 20, 60]  # background, samples, marker


def _backdrop(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hit = _backdrops.get(id(coords))
    if hit is not None and hit[0]() is coords and hit[1] == size:
        return hit[2:]
    xy = np.asarray(coords, np.float32)
    lo, hi = xy.min(0), xy.max(0)
    img = np.zeros((size, size), np.uint8)
    px = _to_pixels(xy, lo, hi, size)
    for dx in (0, 1):  # 2×2-pixel dots
        for dy in (0, 1):
            img[np.clip(px[:, 1] + dy, 0, size - 1), np.clip(px[:, 0] + dx, 0, size - 1)] = 1
    key = id(coords)
    _backdrops[key] = (weakref.ref(coords, lambda _: _backdrops.pop(key, None)), size, img, lo, hi)
    return img, lo, hi


def _to_pixels(
    xy: np.ndarray, lo: np.ndarray, hi: np.ndarray, size: int, pad: int = 8
) -> np.ndarray:
    scaled = (xy - lo) / np.maximum(hi - lo, 1e-9)
    px = pad + scaled * (size - 2 * pad - 1)
    px[:, 1] = size - 1 - px[:, 1]  # y up, as on the Atlas
    return np.clip(px.round().astype(int), 0, size - 1)


def marker_map(coords: np.ndarray, where: np.ndarray, size: int = 256) -> np.ndarray:
    """The map as a small (size, size) image of MAP_PALETTE indices (0 background, 1 samples,
    2 marker) with a cross at `where`: a tenth of a millisecond, and cheap for the browser to
    swap on every slider move."""
    base, lo, hi = _backdrop(coords, size)
    img = base.copy()
    x, y = _to_pixels(np.asarray(where, np.float32)[None], lo, hi, size)[0]
    for d in range(-6, 7):
        for t in (-1, 0, 1):  # a 3-px-thick cross
            for cx, cy in ((x + d, y + d + t), (x + d, y - d + t)):
                if 0 <= cx < size and 0 <= cy < size:
                    img[cy, cx] = 2
    return img


def palette_png(indices: np.ndarray, palette: list[int]) -> bytes:
    """A PNG of palette indices: a sixth of the encode time of the same picture in RGB."""
    im = Image.fromarray(indices, "P")
    im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def context_map(coords: np.ndarray, height: int = 260) -> go.Figure:
    """The map as a grey backdrop for markers and paths: no hover or ids, so it builds in a few
    milliseconds (a slider move redraws it)."""
    fig = go.Figure(go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", hoverinfo="skip",
                                 marker={"size": 4, "color": "lightgrey"}, showlegend=False))  # fmt: skip
    fig.update_layout(height=height, margin={"l": 5, "r": 5, "t": 5, "b": 5}, showlegend=False,
                      xaxis={"showticklabels": False}, yaxis={"showticklabels": False, "scaleanchor": "x"})  # fmt: skip
    return fig


def hover_text(atlas: Atlas, max_cols: int = 6) -> list[str]:
    labels = atlas.labels
    cols = [c for c in labels.columns if c not in ("pattern",)][:max_cols]
    rows = labels[cols].astype(str).to_numpy()
    return [f"id {i}<br>" + "<br>".join(f"{c}: {v}" for c, v in zip(cols, row, strict=True))
            for i, row in enumerate(rows)]  # fmt: skip


def add_points(fig: go.Figure, xy: np.ndarray, name: str, symbol: str = "x", size: int = 14,
               color: str = "red", text: list[str] | None = None, line: bool = False) -> None:  # fmt: skip
    fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines+markers" if line else "markers",
                             name=name, text=text, hovertemplate="%{text}<extra></extra>" if text else None,
                             marker={"symbol": symbol, "size": size, "color": color,
                                     "line": {"width": 1, "color": "black"}}))  # fmt: skip


# What exists once the app's modules are imported (plotly, pandas, and later torch, frozen again
# by _prepare: ~500k objects) lives as long as the process. Frozen, it is skipped by Python's
# full collections, each of which would otherwise stall every session for 140–200 ms (measured
# under load).
gc.freeze()
# The interactive thread, created from this (normal priority) thread: see vae.interactive.
interactive.create()
