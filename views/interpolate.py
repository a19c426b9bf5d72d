"""Interpolate: a path between two latents, its frames, and where it leaves the data."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from explorer.atlas import interpolation
from explorer.latent_ops import nearest
from speckle.stats import contrast_batch
from views import figures, state

checkpoint, dataset, atlas = state.current()
n = len(atlas.mu)
st.title("Interpolate")
st.caption(
    "Decode a path between two samples. Slerp follows the sphere where the prior's mass lies; lerp "
    "cuts through the middle. The distance to the nearest real sample shows where a path leaves "
    "the data."
)

ends = st.session_state.get("interp_ends")
selection = st.session_state.get("selection", [])
if ends is None and len(selection) >= 2:
    ends = (selection[0], selection[1])
ends = ends or (0, min(1, n - 1))
uploads = st.session_state.get("uploads_latent", {})


def endpoint(col, label: str, default_id: int, key: str) -> tuple[np.ndarray, str, int | None]:
    """A sample id, or an upload from the Reconstruct page: (z, name, sample id or None)."""
    chosen = st.session_state.get(f"interp_upload_{key}")
    if uploads:
        kinds = ["sample", "upload"]
        kind = col.radio(
            label,
            kinds,
            index=1 if chosen in uploads else 0,
            horizontal=True,
            key=f"interp_kind_{key}",
        )
        if kind == "upload":
            names = list(uploads)
            name = col.selectbox(
                "Upload",
                names,
                index=names.index(chosen) if chosen in names else 0,
                key=f"interp_up_{key}",
            )
            return np.asarray(uploads[name], np.float32), name, None
    i = int(col.number_input(f"{label} sample id", 0, n - 1, int(default_id), key=f"interp_{key}"))
    return atlas.mu[i], f"#{i}", i


c1, c2, c3, c4 = st.columns(4)
za, name_a, a = endpoint(c1, "From", ends[0], "a")
zb, name_b, b = endpoint(c2, "To", ends[1], "b")
method = c3.radio("Method", ["slerp", "lerp"], horizontal=True, key="interp_method")
steps = int(c4.slider("Frames", 3, 24, 10, key="interp_n"))
if selection:
    st.caption(f"Current map selection: {selection[:10]}{' …' if len(selection) > 10 else ''}")

proj, status = state.projection(atlas, st.session_state.get("atlas_method", "umap"))
zs, frames, path = interpolation(atlas, proj, za, zb, steps, method)

st.image(
    [np.clip(f, 0, 1) for f in frames],
    width=96,
    caption=[f"{t:.2f}" for t in np.linspace(0, 1, steps)],
    clamp=True,
    output_format="PNG",
)

gif = io.BytesIO()
pil = [
    Image.fromarray((np.clip(f, 0, 1) * 255).astype(np.uint8)).resize((192, 192)) for f in frames
]
pil = pil + pil[-2:0:-1]  # play forth and back
pil[0].save(gif, format="GIF", save_all=True, append_images=pil[1:], duration=120, loop=0)
st.download_button(
    "Download animated GIF",
    gif.getvalue(),
    f"interp_{name_a}_{name_b}.gif".replace("#", ""),
    "image/gif",
    key="interp_gif",
)

left, right = st.columns(2)
with left:
    fig = figures.context_map(proj.coords, height=360)
    figures.add_points(
        fig,
        path,
        "path",
        symbol="circle",
        size=8,
        color="orange",
        line=True,
        text=[f"frame {i}" for i in range(steps)],
    )
    figures.add_points(
        fig,
        path[[0, -1]],
        "ends",
        symbol="star",
        size=16,
        color="red",
        text=[f"from {name_a}", f"to {name_b}"],
    )
    st.plotly_chart(fig, key="interp_map", width="stretch")
    st.caption(
        "Path placed on the map through each frame's nearest latents."
        + (f" {status}" if status else "")
    )
with right:
    _, dist = nearest(atlas.mu, zs, k=1)
    region = state.lit_region(dataset, checkpoint.model_config.image_size)
    # The typical gap between real neighbours, for scale.
    sample = np.random.default_rng(0).choice(n, min(n, 500), replace=False)
    typical = float(np.median(nearest(atlas.mu, atlas.mu[sample], k=2)[1][:, 1]))
    table = pd.DataFrame(
        {
            "frame": np.arange(steps),
            "t": np.linspace(0, 1, steps),
            "contrast K": contrast_batch(frames, region.mask),
            "distance to nearest sample": dist[:, 0],
        }
    )
    fig2 = go.Figure()
    fig2.add_trace(
        go.Scatter(
            x=table["t"], y=table["distance to nearest sample"], name="distance to nearest sample"
        )
    )
    fig2.add_trace(
        go.Scatter(x=table["t"], y=table["contrast K"], name="speckle contrast K", yaxis="y2")
    )
    fig2.add_hline(y=typical, line_dash="dot", annotation_text="typical neighbour distance")
    fig2.update_layout(
        height=360,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="t",
        yaxis={"title": "latent distance"},
        yaxis2={"title": "K", "overlaying": "y", "side": "right"},
        legend={"orientation": "h", "y": 1.1},
    )
    st.plotly_chart(fig2, key="interp_stats", width="stretch")
    st.dataframe(table.round(4), hide_index=True, height=200)
    st.caption(f"Contrast K in the lit region: {region.source}.")
