"""Widgets every page shares: the sidebar, model-sized images, and live containers."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer import sources
from explorer.atlas import Atlas
from explorer.images import to_png
from vae.checkpoint import Checkpoint
from views import state

IMAGE_WIDTH = 160


def sidebar() -> None:
    if "model_pending" in st.session_state:
        st.session_state["model"] = st.session_state.pop("model_pending")
    models, datasets = state.choices()
    st.sidebar.selectbox("Model", models, key="model", help="Checkpoints under models/ and runs/")
    st.sidebar.selectbox(
        "Dataset",
        datasets,
        key="dataset",
        help="A simulated set (new samples through a shipped model's fibre), or a folder "
        f"under {sources.data_root()}",
    )


def model_summary(checkpoint: Checkpoint, dataset, atlas: Atlas) -> None:
    c = checkpoint.config
    preset = c.get("train", {}).get("preset") or checkpoint.kind  # "exported": no preset
    st.sidebar.markdown(
        f"**β = {c.get('beta') if c.get('beta') is not None else 'unknown'}** "
        f"({c.get('recon')} reconstruction)  \n"
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
