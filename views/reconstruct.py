"""Reconstruct: users' own speckle images through the model, with speckle-aware metrics, their
place on the map, their nearest training samples and an out-of-distribution check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer.atlas import ERRORS_AUTO_MAX
from explorer.metrics import PIXEL_KEYS, SPECKLE_KEYS
from explorer.uploads import (
    OOD_PERCENTILE,
    Upload,
    analyse,
    lit_region_of,
    load_uploads,
    posterior_samples,
)
from frames import MAX_FILE_BYTES, MAX_UPLOAD_FRAMES, Layout, Normalization
from frames.layout import AXES_3D
from views import figures, state, widgets

checkpoint, dataset, atlas = state.current()
st.title("Reconstruct")
st.caption(
    "Drop in frames from your own camera. Each is preprocessed exactly as in training "
    f"(normalization `{checkpoint.config['preprocessing']['normalization']['mode']}`, "
    f"{checkpoint.model_config.image_size}×{checkpoint.model_config.image_size} px), encoded, decoded "
    "from z = μ, and compared with speckle statistics as well as pixel metrics."
)

files = st.file_uploader(
    "Speckle images (PNG, TIFF 8/16-bit, JPEG, BMP) or stacks (multi-page TIFF, HDF5, .mat, "
    f".npy/.npz: one row per frame, up to {MAX_UPLOAD_FRAMES} frames a file)",
    type=["png", "tif", "tiff", "jpg", "jpeg", "bmp", "gif", "npy", "npz", "h5", "hdf5", "mat"],
    accept_multiple_files=True,
    key="rec_files",
)
o1, o2, o3, o4 = st.columns(4)
window = int(o1.number_input("Local-contrast window (px)", 3, 31, 7, 2, key="rec_window"))
k = int(o2.number_input("Nearest training samples", 1, 12, 5, key="rec_k"))
n_samples = int(o3.number_input("Posterior samples (0 = none)", 0, 8, 0, key="rec_samples"))
axes = o4.selectbox(
    "Stack axis order",
    AXES_3D,
    key="rec_axes",
    help="Of HDF5 and .mat stacks: NHW (frames first), or MATLAB's HWN",
)

if not files:
    st.info("Upload one or more images to start.", icon=":material/upload:")
    st.stop()

norm = Normalization.from_dict(checkpoint.config["preprocessing"]["normalization"])
size = checkpoint.model_config.image_size
cache = st.session_state.setdefault("rec_cache", {})
proj, status = state.projection(atlas, st.session_state.get("atlas_method", "umap"))
# The dataset's lit region, where speckle statistics are taken; found once per dataset and size.
region_key = (dataset.fingerprint(), size)
if st.session_state.get("rec_region_key") != region_key:
    st.session_state["rec_region"] = lit_region_of(dataset, size)
    st.session_state["rec_region_key"] = region_key
region = st.session_state["rec_region"]
todo = [f for f in files if (checkpoint.id, f.file_id, window, k, axes) not in cache]
if todo:
    bar = st.progress(0.0, f"processing {len(todo)} file(s)")
    fresh: list[list[Upload]] = []
    for i, f in enumerate(todo):
        # Streamlit enforces server.maxUploadSize; check again here so the limit holds however
        # the bytes arrived.
        if f.size > MAX_FILE_BYTES:
            error = f"{f.name}: {f.size} bytes is over the limit of {MAX_FILE_BYTES}"
            fresh.append([Upload(f.name, error=error)])
        else:

            def step(done: int, total: int, i: int = i, name: str = f.name) -> None:
                frac = (i + done / max(total, 1)) / (2 * len(todo))
                bar.progress(frac, f"read {name}: frame {done}/{total}")

            fresh.append(
                load_uploads(
                    f.name, f.getvalue(), size, norm, layout=Layout(axes=axes), progress=step
                )
            )
        bar.progress((i + 1) / (2 * len(todo)), f"read {i + 1}/{len(todo)}: {f.name}")
    if len(atlas.mu) <= ERRORS_AUTO_MAX:  # the percentiles below rank against them
        state.recon_errors(atlas)
    flat = [u for group in fresh for u in group]
    for start in range(0, len(flat), 64):
        analyse(flat[start : start + 64], atlas, proj, k=k, window=window, region=region)
        bar.progress(0.5 + 0.5 * min(1.0, (start + 64) / len(flat)), "encoding and measuring")
    for f, group in zip(todo, fresh, strict=True):
        cache[(checkpoint.id, f.file_id, window, k, axes)] = group
    bar.empty()
uploads = [u for f in files for u in cache[(checkpoint.id, f.file_id, window, k, axes)]]
good = [u for u in uploads if u.error is None]
for u in uploads:
    if u.error:
        st.error(u.error, icon=":material/error:")
st.session_state["uploads_latent"] = {u.name: u.mu for u in good}
if not good:
    st.stop()

st.subheader("Batch")
rows = []
for u in good:
    row = {"file": u.name}
    row |= {key: u.metrics[key] for key in PIXEL_KEYS + SPECKLE_KEYS}
    row |= {f"{key} pct": p for key, p in u.ood.items()}
    row["out of distribution"] = ", ".join(u.flagged) or ""
    row["lit region"] = u.region
    row["preprocessing"] = "; ".join(u.notes)
    rows.append(row)
table = pd.DataFrame(rows)
st.dataframe(table.round(4), hide_index=True)
st.download_button(
    "Download metrics (CSV)",
    table.to_csv(index=False).encode(),
    "reconstruct_metrics.csv",
    "text/csv",
    key="rec_csv",
)
st.caption(
    "Pixelwise: MSE, PSNR (data range 1), SSIM, PCC. Speckle: contrast ratio K_rec/K_in (global, and "
    f"local in a {window}×{window} window), hist_w1 = Wasserstein-1 distance of the mean-normalized "
    "intensity histograms, grain_ratio = autocorrelation width of the reconstruction over the input's; "
    f"all taken in the lit region ({', '.join(sorted({u.region for u in good}))}; column 'lit region'). "
    f"'pct' columns: percentile among the {len(atlas.mu)} images of the current dataset; beyond the "
    f"{OOD_PERCENTILE:.0f}th the model has not seen anything like it."
)

left, right = st.columns([3, 2])
with left:
    fig = figures.map_figure(
        proj.coords, None, "", [f"id {i}" for i in range(len(proj.coords))], height=380
    )
    fig.data[0].marker.color = "lightgrey"
    xy = np.stack([u.position for u in good])
    figures.add_points(
        fig, xy, "uploads", symbol="star", size=15, color="crimson", text=[u.name for u in good]
    )
    st.plotly_chart(fig, key="rec_map", width="stretch")
    st.caption(
        "Uploads (stars) placed on the map by the fitted projection."
        + (f" {status}" if status else "")
    )

with right:
    names = [u.name for u in good]
    pick = st.selectbox("Image", names, key="rec_pick")
    u = good[names.index(pick)]
    if u.flagged:
        st.warning(
            f"Out of distribution: {', '.join(u.flagged)} beyond the {OOD_PERCENTILE:.0f}th percentile of "
            "the training set. The model never saw anything like this image.",
            icon=":material/warning:",
        )
    for note in u.notes:
        st.caption(f"⚠ {note}")
    st.caption(
        f"Speckle metrics in the lit region: {u.region}; contrast ratio "
        f"{u.metrics['contrast_ratio']:.3f}, grain ratio {u.metrics['grain_ratio']:.3f}"
    )
    # Short labels: three buttons share a third of the page, and longer ones were cut to
    # "Interpolatio…" twice.
    st.caption("Send this image to")
    b1, b2, b3 = st.columns(3)
    if b1.button(
        "Traverse",
        key="rec_to_traverse",
        help="Start the Traverse sliders from its μ",
        width="stretch",
    ):
        st.session_state["traverse_start"] = ("upload", u.name, u.mu.tolist())
        st.switch_page("views/traverse.py")
    if b2.button(
        "Path start", key="rec_to_interp_a", help="First endpoint on Interpolate", width="stretch"
    ):
        st.session_state["interp_upload_a"] = u.name
        st.switch_page("views/interpolate.py")
    if b3.button(
        "Path end", key="rec_to_interp_b", help="Last endpoint on Interpolate", width="stretch"
    ):
        st.session_state["interp_upload_b"] = u.name
        st.switch_page("views/interpolate.py")

cols = st.columns(4)
with cols[0]:
    widgets.show_image(u.image, f"{u.name} (preprocessed)")
with cols[1]:
    widgets.show_image(u.recon, "reconstruction (z = μ)")
with cols[2]:
    err = np.abs(u.recon - u.image)
    widgets.show_image(err, f"|error| (max {err.max():.2f}, scaled)", normalize=True)
with cols[3]:
    hist = go.Figure()
    for img, label in ((u.image, "input"), (u.recon, "reconstruction")):
        m = img.mean()
        hist.add_trace(
            go.Histogram(
                x=(img / m).ravel() if m > 0 else img.ravel(),
                name=label,
                opacity=0.6,
                histnorm="probability density",
                nbinsx=60,
            )
        )
    grid = np.linspace(0, 6, 100)
    hist.add_trace(go.Scatter(x=grid, y=np.exp(-grid), name="exp(−I)", line={"dash": "dot"}))
    hist.update_layout(
        barmode="overlay",
        height=220,
        margin={"l": 5, "r": 5, "t": 5, "b": 5},
        xaxis_title="I / ⟨I⟩",
        legend={"orientation": "h", "y": -0.3},
    )
    st.plotly_chart(hist, key="rec_hist", width="stretch")

if n_samples:
    samples = posterior_samples(u, atlas, n_samples)
    st.image(
        [np.clip(s, 0, 1) for s in samples],
        width=110,
        caption=[f"z ~ q(z|x) #{i}" for i in range(n_samples)],
        clamp=True,
        output_format="PNG",
    )
st.markdown(f"**{k} nearest training samples** (in latent space)")
st.image(
    [dataset.image(int(i)) for i in u.neighbours],
    width=110,
    caption=[f"#{int(i)}" for i in u.neighbours],
    clamp=True,
    output_format="PNG",
)
