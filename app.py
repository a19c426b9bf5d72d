"""Speckle VAE Explorer: `streamlit run app.py`. Thin UI; the work happens in explorer/ and vae/."""

from __future__ import annotations

import streamlit as st

from pages import common

st.set_page_config(page_title="Speckle VAE Explorer", page_icon="🔬", layout="wide")

PAGES = [
    st.Page("pages/atlas.py", title="Atlas", icon="🗺️", default=True),
    st.Page("pages/traverse.py", title="Traverse", icon="🎚️"),
    st.Page("pages/interpolate.py", title="Interpolate", icon="↔️"),
    st.Page("pages/model.py", title="Model", icon="📋"),
]

page = st.navigation(PAGES)
common.sidebar()
checkpoint, dataset, atlas = common.current()
common.model_summary(checkpoint, dataset, atlas)
page.run()
