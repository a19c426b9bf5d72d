"""Speckle VAE Explorer: `streamlit run app.py`. Thin UI; the work happens in explorer/ and vae/.

The page scripts live in views/, not pages/: a folder named pages/ beside the entry script puts
Streamlit in its legacy multipage mode until some session has run st.navigation, so the first
visit to a deep link (say /traverse) after a restart would run that page alone, without app.py.
"""

from __future__ import annotations

import streamlit as st

from views import start

st.set_page_config(page_title="Speckle VAE Explorer", page_icon=":material/grain:", layout="wide")

PAGES = [
    ("views/atlas.py", "Atlas", ":material/scatter_plot:"),
    ("views/traverse.py", "Traverse", ":material/tune:"),
    ("views/interpolate.py", "Interpolate", ":material/swap_horiz:"),
    ("views/reconstruct.py", "Reconstruct", ":material/upload_file:"),
    ("views/generate.py", "Generate", ":material/auto_awesome:"),
    ("views/inverse.py", "Inverse", ":material/visibility:"),
    ("views/retrain.py", "Retrain", ":material/model_training:"),
    ("views/compare.py", "Compare", ":material/compare:"),
    ("views/model.py", "Model", ":material/description:"),
]

page = st.navigation(start.pages(PAGES))  # the first is the default
slot = start.map_placeholder(page)
# Imported once a first start's placeholder is on its way: torch and the explorer take seconds.
from explorer import serving  # noqa: E402
from vae.checkpoint import CheckpointError  # noqa: E402
from views import state, widgets  # noqa: E402

serving.start()  # once per process: the interactive thread, at this thread's normal priority
widgets.sidebar()
try:
    checkpoint, dataset, atlas = state.current()
    start.atlas_served(slot)
    widgets.model_summary(checkpoint, dataset, atlas)
    page.run()
except CheckpointError as e:
    # A checkpoint opens lazily: one whose weights do not fit its config is found when its
    # model is first built, perhaps by this page. One line, and the sidebar stays to pick
    # another.
    st.error(f"This model cannot be used: {e}", icon=":material/error:")
