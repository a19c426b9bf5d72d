"""Atlas: the map of the dataset's latents. Select points to see a sample; the selection feeds the
other pages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from explorer import density, drift, serving
from explorer.atlas import ERRORS_AUTO_MAX
from explorer.metrics import compare
from explorer.projection import METRICS
from explorer.selection import region_ids, selected_ids
from views import figures, state, widgets

SHOWN = 1000  # selected ids offered in the sample picker

checkpoint, dataset, atlas = state.current()
n = len(atlas.mu)
st.title("Atlas")
st.caption(
    "Each point is one image, placed by its latent mean μ. Box- or lasso-select points (toolbar at "
    "the top right of the map), or click one in the pan or zoom mode (a click selects nothing in "
    "the box and lasso modes), to inspect it; the selection is kept for Traverse, Interpolate and "
    "retraining."
)

c1, c2, c3 = st.columns([1, 2, 1])
method = c1.radio("Map", ["UMAP", "PCA"], horizontal=True, key="atlas_method").lower()
label_cols = [c for c in atlas.labels.columns if c not in ("file", "pattern")]
color_options = label_cols + ["reconstruction error", "KL", "−ELBO", "latent dim", "frame index"]
color_by = c2.selectbox("Colour by", color_options, key="atlas_color")
dim = None
if color_by == "latent dim":
    ranked = [int(d) for d in atlas.dim_order[:64]]
    dim = c3.selectbox(
        "Dim (ranked by KL)",
        ranked,
        key="atlas_dim",
        format_func=lambda d: f"z{d} ({atlas.kl_per_dim[d]:.2f} nats)",
    )
with st.expander("UMAP settings"):
    u1, u2, u3 = st.columns(3)
    n_neighbors = u1.slider("n_neighbors", 2, 100, 15, key="atlas_nn")
    min_dist = u2.slider("min_dist", 0.0, 0.99, 0.1, 0.01, key="atlas_md")
    metric = u3.selectbox("metric", METRICS, key="atlas_metric")

proj, status = state.projection(atlas, method, n_neighbors, min_dist, metric)
needs_errors = color_by in ("reconstruction error", "−ELBO")
if needs_errors and not atlas.errors_ready and n > ERRORS_AUTO_MAX:
    atlas.request_errors()  # a big store's errors: computed on request, not waited for
    color_by = "KL"
elif needs_errors:
    state.recon_errors(atlas)
errors_ready = atlas.errors_ready
errors_busy = atlas.errors_requested and not errors_ready
if status or errors_busy:

    @st.fragment(run_every=2)
    def _poll() -> None:
        """Tick the status while UMAP fits or the errors are computed in the background; rerun
        the page when either is done, to swap the map in or drop the note."""
        _, still = state.projection(atlas, method, n_neighbors, min_dist, metric)
        if (bool(still), atlas.errors_ready) != (bool(status), errors_ready):
            st.rerun()
        if still:
            st.info(still, icon=":material/hourglass_top:")
        if errors_busy and n > ERRORS_AUTO_MAX:
            task = atlas.errors
            st.info(
                f"Computing the reconstruction errors of all {n:,} frames in the background "
                f"({task.elapsed:.0f} s so far: {task.text or 'starting'}); coloured by KL "
                "meanwhile.",
                icon=":material/hourglass_top:",
            )

    _poll()
if proj.note:
    st.caption(proj.note)
if not atlas.errors_requested:
    st.caption(
        f"Reconstruction errors are not in this recording's store: colour by reconstruction "
        f"error or −ELBO to compute them in the background (one decode of each of the {n:,} "
        "frames), or run `python -m explorer.encode` without `--no-errors` ahead of time."
    )
elif errors_busy and n <= ERRORS_AUTO_MAX:
    st.caption("Reconstruction errors are being computed in the background (first start only).")

if color_by == "reconstruction error":
    color = atlas.recon_error
elif color_by == "KL":
    color = atlas.kl
elif color_by == "−ELBO":
    color = atlas.elbo
elif color_by == "latent dim":
    color = np.asarray(atlas.mu[:, dim], np.float32)
elif color_by == "frame index":
    color = np.arange(n, dtype=float)  # acquisition order: a stack's or recording's frame index
else:
    series = atlas.labels[color_by]
    many = series.nunique() > 20 and series.dtype.kind in "fi"
    color = series.to_numpy(float) if many else series.astype(str).to_numpy()

color_name = color_by if dim is None else f"z{dim}"
dense = n > density.DENSITY_ABOVE
if dense:
    sample = density.sample_ids(n, density.SAMPLE)
    fig = figures.density_figure(
        proj.coords, color, color_name, sample, figures.hover_text(atlas, ids=sample)
    )
    st.caption(
        f"{n:,} points: drawn as a density image (brighter: more points) under a sample of "
        f"{len(sample):,} that answer hover and click (in the pan or zoom mode); a box or lasso "
        "selects every point inside."
    )
else:
    fig = figures.map_figure(proj.coords, color, color_name, figures.hover_text(atlas))
ids_before = st.session_state.get("selection", [])
if ids_before:
    figures.add_points(
        fig, proj.coords[ids_before[:200]], "selected", symbol="circle-open", size=11, color="black"
    )
st.plotly_chart(
    fig,
    key="atlas_map",
    on_select="rerun",
    selection_mode=("points", "box", "lasso"),
    width="stretch",
)


def take_selection(chart: str) -> None:
    """Make a chart's box or click the selection when it is new: each chart keeps its last event,
    which must not take the selection back after the other chart (or a page) has moved it."""
    event = st.session_state.get(chart)
    # A density map's box or lasso holds every point inside it, not only the drawn sample's.
    region = region_ids(event, proj.coords) if dense and chart == "atlas_map" else None
    ids = selected_ids(event, n) if region is None else region
    if ids and ids != st.session_state.get(f"{chart}_taken") and ids != ids_before:
        st.session_state[f"{chart}_taken"] = ids
        st.session_state["selection"] = ids
        st.rerun()


take_selection("atlas_map")

# Drawn only when asked for: every rerun of the page would otherwise pay for it.
if st.toggle("Drift over the recording", key="atlas_drift_on"):
    st.caption(
        "Each frame's distance in latent space from the mean of a reference window at the start "
        "(the first minute when the frame rate is given, else the first 5% of the frames), "
        "against frame index or time, in acquisition order. Select points to inspect frames."
    )
    fps = st.number_input(
        "Frame rate (Hz; 0 if unknown)", 0.0, 1e6, 0.0, key="atlas_fps", help="camera frames/s"
    )
    reference = drift.reference_frames(n, fps or None)
    distances = drift.drift(atlas.mu, reference)
    noise = drift.noise_level(distances, reference)
    smooth = drift.rolling_mean(distances, max(5, n // 100))
    x_axis = np.arange(n) / fps if fps else np.arange(n)
    st.plotly_chart(
        figures.drift_figure(
            x_axis,
            distances,
            smooth,
            noise,
            "time (s)" if fps else "frame index",
            ids_before,
        ),
        key="atlas_drift",
        on_select="rerun",
        selection_mode=("points", "box"),
        width="stretch",
    )
    late = float(np.median(distances[-reference:]))
    st.caption(
        f"Reference: the first {reference} frames. Median distance of the last {reference} "
        f"frames: {late:.3f}, against {noise:.3f} for the reference window's own 95th "
        f"percentile ({late / max(noise, 1e-12):.2f}×)."
    )
    take_selection("atlas_drift")
ids = st.session_state.get("selection", [])

if not ids:
    st.markdown("_Nothing selected yet._")
else:
    st.subheader(
        f"{len(ids)} selected" + (f"; showing id {ids[0]}" if len(ids) > 1 else f": id {ids[0]}")
    )
    # The first SHOWN ids are offered: a box on a density map may hold hundreds of thousands.
    i = st.selectbox("Sample", ids[:SHOWN], key="atlas_show") if len(ids) > 1 else ids[0]
    x = dataset.image(i)
    # Torch is imported here, on the first click: a cached atlas's map is drawn without it.
    rec = serving.decode_interactive(serving.model(checkpoint), atlas.mu[i : i + 1])[0]
    cols = st.columns(4)
    with cols[0]:
        widgets.show_image(x, f"input #{i}")
    pattern = dataset.pattern(i) if hasattr(dataset, "pattern") else None
    with cols[1]:
        if pattern is not None:
            widgets.show_image(pattern, "input pattern (SLM)")
        else:
            st.caption("no input pattern")
    with cols[2]:
        widgets.show_image(rec, "reconstruction (z = μ)")
    with cols[3]:
        err = np.abs(rec - x)
        widgets.show_image(err, f"|error| (max {err.max():.2f}, scaled)", normalize=True)
    region = state.lit_region(dataset, checkpoint.model_config.image_size)
    m = compare(x, rec, mask=region.mask)
    row = {k: m[k] for k in ("mse", "psnr", "ssim", "pcc")}
    row |= {
        "K_in": m["contrast_in"],
        "K_rec": m["contrast_rec"],
        "K_rec/K_in": m["contrast_ratio"],
        "grain ratio": m["grain_ratio"],
        "KL (nats)": float(atlas.kl[i]),
    }
    st.dataframe(pd.DataFrame([row]).round(4), hide_index=True)
    st.caption(f"Speckle statistics (K, grain) in the lit region: {region.source}.")
    st.dataframe(atlas.labels.iloc[ids[:500]], height=180)
    b1, b2, b3 = st.columns(3)
    if b1.button("Traverse from this sample", key="atlas_to_traverse"):
        st.session_state["traverse_start"] = ("sample", int(i))
        st.switch_page("views/traverse.py")
    if len(ids) >= 2 and b2.button("Interpolate between the first two", key="atlas_to_interp"):
        st.session_state["interp_ends"] = (int(ids[0]), int(ids[1]))
        st.switch_page("views/interpolate.py")
    if b3.button("Clear selection", key="atlas_clear"):
        st.session_state["selection"] = []
        st.rerun()

with st.expander("Export coordinates and latents (CSV)"):
    if st.checkbox("Prepare the CSV", key="atlas_export"):
        frame = atlas.labels.copy()
        frame.insert(0, "id", np.arange(n))
        frame["map_x"], frame["map_y"] = proj.coords[:, 0], proj.coords[:, 1]
        if n <= ERRORS_AUTO_MAX or atlas.errors_ready:
            frame["recon_error"] = state.recon_errors(atlas)
        frame["kl"] = atlas.kl
        parts = [frame.reset_index(drop=True)]
        if n <= ERRORS_AUTO_MAX:
            columns = [f"mu_{d}" for d in range(atlas.mu.shape[1])]
            parts.append(pd.DataFrame(np.asarray(atlas.mu, np.float32).round(5), columns=columns))
        else:
            st.caption(
                f"{n:,} frames: the CSV holds the map and the labels; μ is in the store's "
                "mu.npy (float16, `numpy.load(..., mmap_mode='r')`), written by "
                "`python -m explorer.encode`."
            )
        csv = pd.concat(parts, axis=1).to_csv(index=False).encode()
        st.download_button("Download atlas.csv", csv, "atlas.csv", "text/csv", key="atlas_download")
