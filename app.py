"""Speckle VAE Explorer: `streamlit run app.py`. Thin UI; the work happens in explorer/ and vae/.

The page scripts live in views/, not pages/: a folder named pages/ beside the entry script puts
Streamlit in its legacy multipage mode until some session has run st.navigation, so the first
visit to a deep link (say /traverse) after a restart would run that page alone, without app.py.
"""

from __future__ import annotations

import streamlit as st

from views import common

st.set_page_config(page_title="Speckle VAE Explorer", page_icon=":material/grain:", layout="wide")

PAGES = [
    st.Page("views/atlas.py", title="Atlas", icon=":material/scatter_plot:", default=True),
    st.Page("views/traverse.py", title="Traverse", icon=":material/tune:"),
    st.Page("views/interpolate.py", title="Interpolate", icon=":material/swap_horiz:"),
    st.Page("views/reconstruct.py", title="Reconstruct", icon=":material/upload_file:"),
    st.Page("views/retrain.py", title="Retrain", icon=":material/model_training:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("views/model.py", title="Model", icon=":material/description:"),
]

page = st.navigation(PAGES)
common.sidebar()
checkpoint, dataset, atlas = common.current(refresh=True)
common.model_summary(checkpoint, dataset, atlas)
page.run()
