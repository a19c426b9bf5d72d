"""Generate: the speckle the fibre outputs for an input pattern, predicted by the loaded VAE's
pattern-conditioned latent diffusion generator, beside the fibre's true output."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from diffusion.sampling import GUIDANCE, SAMPLER, SAMPLES, STEPS
from diffusion.schedulers import SAMPLERS
from explorer import generate, serving, sources
from explorer.images import to_png
from frames import SUFFIXES, ImageError
from vae.checkpoint import CheckpointError
from views import figures, state, widgets

SOURCES = ("Dataset pattern", "Draw", "Upload")
CANVAS = 256  # px; the drawing is area-resampled to the generator's pattern size
# px on the canvas, 2.5 px at 16×16: the training digits are broad (30% of the pixels lit). Drawn
# digits filling the square measured a cosine similarity of 0.74–0.78 to the nearest training
# pattern at 22 px, all out of distribution (below 0.91), and 0.85–0.91 at 40 px.
STROKE = 40
PER_ROW = 8  # samples a row: 8 fill the wide layout's width at ~110 px each
# What the pattern upload takes: every suffix the readers know (images, arrays, lab files).
UPLOAD_TYPES = [suffix[1:] for suffix in SUFFIXES]


def _shown(path: str | Path | None) -> str:
    """A path as the user would type it from the repository root."""
    if path is None:
        return "<dataset folder>"
    path = Path(path).resolve()
    return str(path.relative_to(sources.REPO)) if path.is_relative_to(sources.REPO) else str(path)


def _line(metrics: dict | None, pcc: bool = True) -> str:
    """The panel's PCC with the true speckle (when known) and its speckle contrast."""
    if not metrics:
        return ""
    parts = [f"PCC {metrics['pcc']:.3f}"] if pcc and "pcc" in metrics else []
    return " · ".join(parts + [f"contrast {metrics['contrast']:.3f}"])


def _grid(images: np.ndarray, captions: list[str], per_row: int) -> None:
    """Model-sized images in rows of equal columns, enlarged 2× as lossless PNGs (st.image of a
    list wraps wherever the width runs out)."""
    for start in range(0, len(images), per_row):
        for col, img, cap in zip(
            st.columns(per_row),
            images[start : start + per_row],
            captions[start : start + per_row],
            strict=False,
        ):
            col.image(to_png(img, scale=2), caption=cap, width="stretch", output_format="PNG")


checkpoint, dataset, atlas = state.current()
st.title("Generate")
st.caption(
    "Predict the speckle the fibre outputs for an input pattern, next to the true speckle. A "
    "latent diffusion model samples the VAE's latents given the pattern and the VAE decodes them; "
    "their spread shows how sure it is. The true speckle is a dataset pattern's recorded frame, "
    "or, for a drawn or uploaded pattern, the fibre's model when the dataset was simulated."
)

paths = state.generator_paths(checkpoint.id)
path = None
if len(paths) > 1:
    path = st.selectbox(
        "Generator",
        paths,
        format_func=_shown,
        key="gen_generator",
        help="Every generator trained for this model: shipped ones first, then runs, newest first",
    )
elif paths:
    path = paths[0]
if path is None:
    data = getattr(dataset, "root", None)
    command = (
        f"python -m diffusion.train --vae {_shown(checkpoint.path)} --data {_shown(data)} "
        f"--out runs/gen-{Path(checkpoint.path).name}"
    )
    needs = (
        ""
        if "pattern" in dataset.labels.columns
        else " on a dataset whose labels.csv names each image's input pattern (the simulator "
        "writes one: `python -m speckle mmf --out data/NAME`)"
    )
    st.info(
        f"No generator was trained for this model (`{_shown(checkpoint.path)}`). Train one{needs}:"
        f"\n\n`{command}`\n\nIt shows up here once its first checkpoint is written.",
        icon=":material/info:",
    )
    st.stop()

try:
    with st.spinner("loading the generator (once per process)"):
        served = state.generator(path, checkpoint)
except CheckpointError as e:
    st.error(f"The generator in {_shown(path)} cannot be used: {e}", icon=":material/error:")
    st.stop()
size = served.generator.denoiser_config.pattern_size


def dataset_input() -> tuple[np.ndarray | None, str]:
    n = len(dataset)
    if st.session_state.get("gen_index", 0) > n - 1:  # another, smaller dataset was picked
        st.session_state["gen_index"] = 0
    i = int(st.number_input(f"Sample (0–{n - 1})", 0, n - 1, 0, key="gen_index"))
    pattern = generate.dataset_pattern(dataset, i, size)
    if pattern is None:
        st.info(
            "This dataset names no input patterns (labels.csv has no pattern column): "
            "draw or upload one.",
            icon=":material/info:",
        )
        return None, ""
    labels = dataset.labels
    digit = labels["digit"].iloc[i] if "digit" in labels.columns else None
    # The recorded frame of this sample is its true speckle, simulated or measured.
    st.session_state["gen_truth_of"] = (dataset.fingerprint(), i)
    return pattern, f"sample #{i}" + ("" if digit is None or pd.isna(digit) else f", digit {digit}")


def draw_input() -> tuple[np.ndarray | None, str]:
    # Imported here: the component registers itself with the running app on import.
    from streamlit_drawable_canvas import st_canvas

    drawn = st_canvas(
        stroke_width=STROKE,
        stroke_color="#ffffff",
        background_color="#000000",
        width=CANVAS,
        height=CANVAS,
        drawing_mode="freedraw",
        return_image_data=True,
        key="gen_canvas",
    )
    pattern = generate.canvas_pattern(None if drawn is None else drawn.image_data, size)
    if pattern is None:
        st.info(
            "Draw a pattern, white on black: a digit filling the square, say, like the "
            "training patterns. Then press Generate.",
            icon=":material/draw:",
        )
    return pattern, "drawn"


def upload_input() -> tuple[np.ndarray | None, str]:
    f = st.file_uploader(
        "Pattern: bright is on. An image (PNG, TIFF, JPEG, BMP, GIF), or a stack or recording of "
        "patterns (multi-page TIFF, .npy, .npz, HDF5, .mat)",
        type=UPLOAD_TYPES,
        key="gen_upload",
    )
    if f is None:
        st.info("Upload an input pattern, then press Generate.", icon=":material/upload:")
        return None, ""
    data = f.getvalue()
    try:
        names = generate.upload_pattern_names(data, f.name)
        chosen = names[0]
        if len(names) > 1:  # a stack, or a paired recording's pattern array: pick a frame
            if st.session_state.get("gen_upload_frame", 0) > len(names) - 1:
                st.session_state["gen_upload_frame"] = 0  # another, shorter file was uploaded
            last = len(names) - 1
            k = int(st.number_input(f"Pattern (0–{last})", 0, last, 0, key="gen_upload_frame"))
            chosen = names[k]
        return generate.upload_pattern(data, f.name, size, chosen), chosen
    except ImageError as e:
        st.error(str(e), icon=":material/error:")
        return None, ""


source = st.radio("Pattern", SOURCES, horizontal=True, key="gen_source")
st.session_state.pop("gen_truth_of", None)
left, right = st.columns([1, 2], gap="large")
with left:
    pattern, label = {SOURCES[0]: dataset_input, SOURCES[1]: draw_input, SOURCES[2]: upload_input}[
        source
    ]()
with right:
    c = st.columns(5)
    sampler = c[0].selectbox(
        "Sampler",
        SAMPLERS,
        SAMPLERS.index(SAMPLER),
        key="gen_sampler",
        help="The default scored best on a validation split; docs/generator.md compares them",
    )
    steps = int(c[1].number_input("Steps", 1, 200, STEPS, key="gen_steps"))
    guidance = float(
        c[2].number_input(
            "Guidance",
            0.0,
            10.0,
            GUIDANCE,
            0.5,
            key="gen_guidance",
            help="Classifier-free guidance w: 1 = none, 0 ignores the "
            "pattern, above 1 follows it more closely at the cost of "
            "variety",
        )
    )
    seed = int(c[3].number_input("Seed", 0, 2**31 - 1, 0, key="gen_seed"))
    n = int(c[4].number_input("Samples", 1, 32, SAMPLES, key="gen_n"))
    preview, status = st.columns([1, 3])
    if pattern is not None:
        with preview:
            widgets.show_image(
                pattern, f"what the generator sees: {label}, {size}×{size}", width=128
            )
    run = status.button(
        "Generate",
        key="gen_run",
        type="primary",
        icon=":material/auto_awesome:",
        disabled=pattern is None,
    )

region = state.lit_region(dataset, checkpoint.model_config.image_size)
# The result stands for this model, generator and dataset (the truth and the lit region are the
# dataset's) until Generate is pressed again; the first visit generates on its own.
where = (checkpoint.id, path, dataset.fingerprint())
last = st.session_state.get("gen_last")
if last is not None and last["where"] != where:
    last = None
settings = (sampler, steps, guidance, seed, n)
request = None if pattern is None else (hashlib.sha1(pattern.tobytes()).hexdigest(), settings)
if pattern is not None and (run or (last is None and source == SOURCES[0])):
    truth_of = st.session_state.get("gen_truth_of")
    recorded = dataset.image(truth_of[1]) if truth_of else None
    with st.spinner(f"generating {n} samples ({steps} {sampler} steps)"):
        # On the app's single-threaded interactive worker: measured 0.14 s a click there, 0.21 s
        # with torch's two threads on 2 cores (explorer/serving.py).
        result = serving.on_interactive_thread(
            generate.generate,
            served,
            checkpoint,
            pattern,
            n=n,
            steps=steps,
            sampler=sampler,
            guidance=guidance,
            seed=seed,
            mask=region.mask,
            dataset_root=getattr(dataset, "root", None),
            truth=recorded,
        )
    truth_label = "recorded" if recorded is not None else "the fibre's model"
    last = {
        "where": where,
        "request": request,
        "label": label,
        "settings": settings,
        "result": result,
        "truth_label": truth_label,
        "fibre_note": generate.fibre_note(served, getattr(dataset, "root", None)),
    }
    st.session_state["gen_last"] = last
if last is None:
    st.stop()

res = last["result"]
sampler_, steps_, guidance_, seed_, n_ = last["settings"]
m = res.metrics
with status:
    if request is None:
        st.caption(f"Below: the result for the last pattern generated from ({last['label']}).")
    elif request != last["request"]:
        st.caption(":material/refresh: The pattern or the settings changed: press Generate.")
    st.caption(
        f"{n_} samples in {res.seconds:.1f} s ({steps_} {sampler_} steps, guidance "
        f"{guidance_:g}, seed {seed_})."
    )
    if res.similarity is not None:
        st.caption(
            f"Cosine similarity to the nearest of the {len(served.train_patterns)} training "
            f"patterns: {res.similarity:.3f} (out of distribution below {served.ood_threshold:.3f}, "
            "where the 1st percentile of the training patterns' own lies)."
        )
    elif served.note:
        st.caption(served.note)
if last["fibre_note"]:
    st.info(last["fibre_note"], icon=":material/info:")
if res.ood:
    st.warning(
        f"This pattern is far from every training pattern (cosine similarity {res.similarity:.3f}, "
        f"below the threshold {served.ood_threshold:.3f}): the prediction is unreliable.",
        icon=":material/warning:",
    )

cols = st.columns(6)
with cols[0]:
    widgets.show_image(res.pattern, f"input pattern ({last['label']})")
with cols[1]:
    if res.truth is not None:
        widgets.show_image(
            res.truth, f"true speckle ({last['truth_label']}) · {_line(m.get('truth'), pcc=False)}"
        )
    else:
        st.caption("no true speckle: the dataset's fibre is unknown (not simulated)")
with cols[2]:
    widgets.show_image(res.mean, f"mean of {n_} samples · {_line(m.get('mean'))}")
with cols[3]:
    widgets.show_image(res.std, f"per-pixel std (max {res.std.max():.3f}, scaled)", normalize=True)
with cols[4]:
    if res.truth_recon is not None:
        widgets.show_image(
            res.truth_recon, f"VAE reconstruction of the truth · {_line(m.get('recon'))}"
        )
    else:
        st.caption("no VAE reconstruction: there is no true speckle")
with cols[5]:
    if res.regressor is not None:
        widgets.show_image(res.regressor, f"regressor · {_line(m.get('regressor'))}")
    else:
        st.caption("this generator has no regressor")
st.caption(
    "PCC with the true speckle and speckle contrast (σ/⟨I⟩), in the dataset's lit region "
    f"({region.source}). The VAE's reconstruction of the truth is about the best a sample can do: "
    "the generator samples the VAE's latents. The regressor predicts one latent per pattern directly, "
    "without sampling: a baseline."
)

st.subheader("Samples")
with st.container(key="gen_samples"):
    _grid(
        res.samples,
        [f"sample {j} · {_line(m.get(f'sample {j}'))}" for j in range(len(res.samples))],
        PER_ROW,
    )

strip, where_col = st.columns([3, 2], gap="large")
with strip:
    st.markdown("**x̂₀ along the way** (sample 0)")
    _grid(res.filmstrip, [f"step {k} of {steps_}" for k in res.filmstrip_steps], len(res.filmstrip))
    st.caption("The sampler's estimate of the clean latent (x̂₀) after each step, decoded.")
with where_col:
    proj, map_status = state.projection(atlas, st.session_state.get("atlas_method", "umap"))
    fig = figures.context_map(proj.coords, height=320)
    xy = proj.place_nearest(atlas.active_index, res.latents[:, atlas.active])
    figures.add_points(
        fig,
        xy,
        "samples",
        symbol="star",
        size=14,
        color="crimson",
        text=[f"sample {j}" for j in range(len(xy))],
    )
    if res.truth_latent is not None:
        t = proj.place_nearest(atlas.active_index, res.truth_latent[None, atlas.active])
        figures.add_points(
            fig,
            t,
            "true speckle",
            symbol="diamond",
            size=14,
            color="gold",
            text=["true speckle (its μ)"],
        )
    st.plotly_chart(fig, key="gen_map", width="stretch")
    st.caption(
        "The samples (red stars) and the true speckle's latent (gold diamond) on the map, placed "
        "through their nearest latents." + (f" {map_status}" if map_status else "")
    )
