"""Traverse: move single latent dims of a starting z and watch the decoded image change.

The page script views/traverse.py only calls render(): a page script is compiled on every run
under AppTest (a server caches it), and this page is on the slider path that
benchmarks/slider.py measures."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer import images, serving
from explorer.atlas import Atlas
from explorer.latent_ops import set_dims
from explorer.projection import Projection
from vae.checkpoint import Checkpoint
from vae.inference import decode
from views import figures, state, widgets


def render() -> None:
    checkpoint, _, atlas = state.current()
    # Built here if not yet (a lazily opened checkpoint), outside the slider fragment: a model
    # that cannot be built then fails the page, which app.py reports in one line.
    serving.model(checkpoint)
    n, dz = atlas.mu.shape
    st.title("Traverse")
    st.caption(
        "Sliders move the most informative latent dims (ranked by mean KL) in units of σ, the "
        "spread of μ over the dataset. Every move decodes the new z."
    )
    z0, start_name, k = _start(atlas, n, dz)
    dims = tuple(int(d) for d in atlas.dim_order[:k])
    widgets.live_style("trav_live")
    _sliders(checkpoint, atlas, z0, start_name, dims)
    _grid(checkpoint, atlas, z0, dims)
    st.subheader("KL per dimension")
    st.vega_lite_chart(spec=figures.kl_bar_spec(atlas, dims), width="stretch")
    st.caption(
        f"{atlas.active_units} of {dz} dims are active (mean KL > 0.01 nats); the top 64 are "
        "shown, the slider dims in red."
    )


def _start(atlas: Atlas, n: int, dz: int) -> tuple[np.ndarray, str, int]:
    """The starting z (selected sample, sample id, upload or origin), its name and K."""
    start = st.session_state.get("traverse_start")
    selection = st.session_state.get("selection", [])
    options = ["sample id", "origin (z = 0)"]
    if selection:
        options.insert(0, "selected sample")
    default = 0
    if start and start[0] == "sample":
        default = options.index("sample id")
    elif start and start[0] == "upload" and "upload" not in options:
        options.insert(0, "upload")
    c1, c2, c3 = st.columns([2, 1, 1])
    source = c1.radio("Start from", options, index=default, horizontal=True, key="trav_source")
    sample_id = None
    if source == "selected sample":
        sample_id = c2.selectbox("Selected", selection, key="trav_sel")
    elif source == "sample id":
        first = start[1] if start and start[0] == "sample" else 0
        sample_id = int(c2.number_input("Sample id", 0, n - 1, int(first), key="trav_id"))
    if source == "upload" and start:
        z0, name = np.asarray(start[2], np.float32), f"upload {start[1]}"
    elif sample_id is not None:
        z0, name = atlas.mu[sample_id], f"sample #{sample_id}"
    else:
        z0, name = np.zeros(dz, np.float32), "origin"
    k = int(c3.number_input("Dims (K)", 1, min(64, dz), 8, key="trav_k"))
    return z0, name, k


@st.fragment
def _sliders(
    checkpoint: Checkpoint, atlas: Atlas, z0: np.ndarray, start_name: str, dims: tuple[int, ...]
) -> None:
    """Only this fragment reruns on a slider move: decode one z, place it on the map."""
    with st.container(key="trav_live"):
        _slider_body(checkpoint, atlas, z0, start_name, dims)


def _slider_body(
    checkpoint: Checkpoint, atlas: Atlas, z0: np.ndarray, start_name: str, dims: tuple[int, ...]
) -> None:
    kl = atlas.kl_per_dim
    left, right = st.columns([3, 2])
    offsets = {}
    with left:
        grid = st.columns(2)
        for j, d in enumerate(dims):
            offsets[d] = grid[j % 2].slider(
                f"z{d}  ·  KL {kl[d]:.2f} nats",
                -3.0,
                3.0,
                0.0,
                0.1,
                key=f"trav_{d}",
                format="%+.1f σ",
            )
        # A callback, which runs before the sliders are drawn: once drawn, their values can no
        # longer be set in this run.
        st.button("Reset sliders", key="trav_reset", on_click=_reset, args=(dims,))
    z = set_dims(z0, offsets, atlas.scale)
    proj, _ = state.projection(atlas, st.session_state.get("atlas_method", "umap"))
    # The model is passed in, not read on the interactive thread: were it not built yet (render
    # builds it), every session's decodes would queue behind that build.
    image, where = serving.on_interactive_thread(
        _decode_and_place, serving.model(checkpoint), atlas, proj, z
    )
    with right:
        moved = ", ".join(f"z{d} {v:+.1f}σ" for d, v in offsets.items() if v) or "no dims moved"
        widgets.show_image(image, f"decoded: {start_name}; {moved}", width=256, enlarge=False)
        # A picture, not a plotly chart: every move would otherwise send and re-render thousands
        # of points in the browser, which is what slowed many concurrent sessions down.
        st.image(
            images.palette_png(figures.marker_map(proj.coords, where[0]), figures.MAP_PALETTE),
            caption="current z (red) on the map",
            width=256,
            output_format="PNG",
        )


def _reset(dims: tuple[int, ...]) -> None:
    for d in dims:
        st.session_state[f"trav_{d}"] = 0.0


def _decode_and_place(
    model, atlas: Atlas, proj: Projection, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The decoded image of z and its place on the map: one trip to the interactive thread."""
    image = decode(model, z[None])[0]
    return image, proj.place_nearest(atlas.active_index, z[None, atlas.active])


def _grid(checkpoint: Checkpoint, atlas: Atlas, z0: np.ndarray, dims: tuple[int, ...]) -> None:
    st.subheader("Traversal grid")
    g1, g2 = st.columns([1, 3])
    steps = int(g1.number_input("Steps", 3, 15, 7, key="trav_steps"))
    png = state.traversal_grid(checkpoint, atlas, z0, dims, steps)
    g2.image(
        png, caption=f"rows: z{', z'.join(map(str, dims))}; columns: −3σ … +3σ", output_format="PNG"
    )
    # Bytes, not a callable: Streamlit stores a callable's result unreferenced by any session, so
    # the orphan sweeps at the end of two reruns (slider moves) can delete it before the browser
    # fetches it, and the click silently downloads nothing (seen once in CI). Bytes are kept for
    # the session across fragment reruns. They are rehashed only on full reruns.
    g1.download_button("Download grid (PNG)", png, "traversal.png", "image/png", key="trav_grid_dl")
