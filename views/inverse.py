"""Inverse: see through the fibre. Reconstruct the input pattern behind a speckle frame with every
reconstructor trained for the loaded VAE (explorer/inverse.py), beside the true pattern, and send
a reconstruction through the generator to compare its speckle with the frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from explorer import inverse, serving, sources
from explorer.uploads import load_uploads
from frames import SUFFIXES
from vae.checkpoint import CheckpointError
from vae.foreign import normalization_of
from views import figures, state, widgets

SOURCES = ("Dataset frame", "Upload")
UPLOAD_TYPES = [suffix[1:] for suffix in SUFFIXES]
TILE = 112  # px: the frame, the truth and five reconstructions fit one row of the wide layout
TRAIN = "python -m inverse.train --method METHOD --vae {vae} --data {data} --out runs/inv-METHOD"


def _shown(path: str | Path | None) -> str:
    if path is None:
        return "<dataset folder>"
    path = Path(path).resolve()
    return str(path.relative_to(sources.REPO)) if path.is_relative_to(sources.REPO) else str(path)


@st.cache_resource(show_spinner=False, max_entries=4)
def _reconstructors(paths: tuple[str, ...], mtimes: tuple[float, ...]) -> dict:
    return inverse.load([Path(p) for p in paths])


def reconstructors(checkpoint) -> dict:
    paths = tuple(str(p) for p in inverse.matching(checkpoint))
    mtimes = tuple((Path(p) / "config.json").stat().st_mtime for p in paths)
    return _reconstructors(paths, mtimes)


checkpoint, dataset, atlas = state.current()
st.title("Inverse")
st.caption(
    "See through the fibre: the input pattern behind a speckle frame, read by each reconstructor "
    "trained for this model (linear read-outs of μ and the pixels, a dense net, an MLP of μ, and "
    "the inverse of a fitted transmission matrix), beside the true pattern when it is known. "
    "docs/inverse.md says how each was trained and how they score."
)
try:
    with st.spinner("loading the reconstructors (once per process)"):
        recs = reconstructors(checkpoint)
except (CheckpointError, OSError) as e:
    st.error(f"A reconstructor cannot be used: {e}", icon=":material/error:")
    st.stop()
if not recs:
    command = TRAIN.format(vae=_shown(checkpoint.path), data=_shown(getattr(dataset, "root", None)))
    st.info(
        f"No reconstructor was trained for this model (`{_shown(checkpoint.path)}`). Train one "
        f"on a dataset of frames paired with their patterns:\n\n`{command}`",
        icon=":material/info:",
    )
    st.stop()

source = st.radio("Frame", SOURCES, horizontal=True, key="inv_source")
frame = mu = truth = None
label = ""
if source == SOURCES[0]:
    n = len(dataset)
    if st.session_state.get("inv_index", 0) > n - 1:  # another, smaller dataset was picked
        st.session_state["inv_index"] = 0
    i = int(st.number_input(f"Sample (0–{n - 1})", 0, n - 1, 0, key="inv_index"))
    frame, mu = dataset.image(i), atlas.mu[i]
    truth = inverse.true_pattern(dataset, i)
    digit = dataset.labels["digit"].iloc[i] if "digit" in dataset.labels.columns else None
    label = f"sample #{i}" + ("" if digit is None or pd.isna(digit) else f", digit {digit}")
else:
    f = st.file_uploader(
        "Speckle frames: an image (PNG, TIFF, JPEG, BMP), or a stack (multi-page TIFF, .npy, "
        ".npz, HDF5, .mat)",
        type=UPLOAD_TYPES,
        key="inv_upload",
    )
    if f is None:
        st.info("Upload a speckle frame or a stack.", icon=":material/upload:")
        st.stop()
    size = checkpoint.model_config.image_size
    ups = load_uploads(f.name, f.getvalue(), size, normalization_of(checkpoint))
    for bad in [u for u in ups if u.error]:
        st.error(bad.error, icon=":material/error:")
    ups = [u for u in ups if u.error is None]
    if not ups:
        st.stop()
    k = 0
    if len(ups) > 1:
        if st.session_state.get("inv_frame", 0) > len(ups) - 1:
            st.session_state["inv_frame"] = 0
        k = int(st.number_input(f"Frame (0–{len(ups) - 1})", 0, len(ups) - 1, 0, key="inv_frame"))
    frame, label = ups[k].image, ups[k].name

# On the app's single-threaded interactive worker, as every small torch computation.
model = serving.model(checkpoint)
if mu is None:
    mu = serving.on_interactive_thread(inverse.frame_mu, model, frame)
results = serving.on_interactive_thread(
    inverse.reconstruct_frame, recs, frame, checkpoint, mu, truth
)
cols = st.columns(2 + len(results))
with cols[0]:
    widgets.show_image(frame, f"speckle ({label})", width=TILE)
with cols[1]:
    if truth is not None:
        widgets.show_image(truth, "true pattern", width=TILE)
    else:
        st.caption("no true pattern: the frame names none")
for col, r in zip(cols[2:], results, strict=True):
    with col:
        pcc = "" if r.pcc is None else f" · PCC {r.pcc:.3f}"
        widgets.show_image(r.pattern, f"{r.label}{pcc} · {r.ms:.1f} ms", width=TILE)
st.caption(
    "PCC with the true pattern over the 16×16 SLM. Times: this frame through each method on "
    "the server; the transmission matrix's inversion runs a few hundred gradient steps from "
    "several starts."
)

trip, where_col = st.columns([3, 2], gap="large")
with where_col:
    proj, map_status = state.projection(atlas, st.session_state.get("atlas_method", "umap"))
    fig = figures.context_map(proj.coords, height=300)
    xy = proj.place_nearest(atlas.active_index, np.asarray(mu)[None, atlas.active])
    figures.add_points(fig, xy, "this frame", symbol="star", size=14, color="crimson", text=[label])
    st.plotly_chart(fig, key="inv_map", width="stretch")
    st.caption(
        "The frame on the map (red star), placed through its nearest latents."
        + (f" {map_status}" if map_status else "")
    )
with trip:
    st.subheader("Round trip")
    paths = state.generator_paths(checkpoint.id)
    if not paths:
        st.caption("No generator was trained for this model: no round trip.")
        st.stop()
    chosen = st.selectbox(
        "Reconstruction to send to Generate", [r.label for r in results], key="inv_trip_method"
    )
    go = st.button("Generate its speckle", key="inv_trip", icon=":material/auto_awesome:")
    where = (checkpoint.id, label, chosen)
    if go:
        pattern = next(r.pattern for r in results if r.label == chosen)
        region = state.lit_region(dataset, checkpoint.model_config.image_size)
        try:
            served = state.generator(paths[0], checkpoint)
        except CheckpointError as e:
            st.error(
                f"The generator in {_shown(paths[0])} cannot be used: {e}", icon=":material/error:"
            )
            st.stop()
        with st.spinner("generating"):
            rt = serving.on_interactive_thread(
                inverse.round_trip, served, checkpoint, pattern, frame, region.mask
            )
        st.session_state["inv_trip_last"] = (where, rt)
    last = st.session_state.get("inv_trip_last")
    if last is not None and last[0] == where:
        rt = last[1]
        c = st.columns(2)
        with c[0]:
            widgets.show_image(frame, "the frame")
        with c[1]:
            widgets.show_image(
                rt.speckle,
                f"generated from the {chosen} reconstruction · PCC {rt.pcc:.3f}",
            )
        st.caption(
            f"Mean of {inverse.ROUND_TRIP_SAMPLES} generator samples for the reconstruction, "
            f"{rt.seconds:.1f} s; PCC with the frame in the dataset's lit region. A faithful "
            "reconstruction brings the frame back, up to the generator's own error "
            "(docs/generator.md)."
        )
