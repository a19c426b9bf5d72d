"""The start of every script run, before the heavy imports (torch, the explorer) and the atlas:
the navigation, and on a process's first atlas a placeholder map. Imports Streamlit and plotly
only."""

from __future__ import annotations

import copy

# numpy and pandas whole, under this module's import lock: plotly looks them up in sys.modules
# without importing them, and on a fresh server several sessions' first runs would otherwise
# meet one that another session's thread is still importing ("partially initialized module
# 'numpy'" or 'pandas': 3 of 4 sessions opened at once got that error instead of a map).
import numpy  # noqa: F401
import pandas  # noqa: F401
import plotly.graph_objects as go
import streamlit as st

_pages: dict[tuple, list[st.Page]] = {}
# Set once this process has served an atlas: later sessions and reruns get theirs from the
# caches at once, and need no placeholder.
served = False


def pages(specs: list[tuple[str, str, str]]) -> list[st.Page]:
    """st.Page objects for (script, title, icon) specs, the first the default. Each one resolves
    its path and hashes it, 2 ms a run for seven pages, so they are built once per process and
    copied: st.navigation marks the page it returns as callable once, state that concurrent
    sessions must not share."""
    key = tuple(specs)
    if key not in _pages:
        _pages[key] = [
            st.Page(path, title=title, icon=icon, default=i == 0)
            for i, (path, title, icon) in enumerate(specs)
        ]
    return [copy.copy(page) for page in _pages[key]]


def map_placeholder(page: st.Page):
    """Before the first atlas of this process, on the Atlas page: an empty map where the map
    will be, drawn before torch is even imported. The browser meanwhile fetches and compiles
    plotly.js (4.4 s of a first start's 20 s on 2 cores went to that after the map was sent).
    Returns the slot to clear once the atlas is there, or None."""
    # st.runtime.exists(): False in bare mode (app.py run again by a "spawn" child), where st.*
    # calls do nothing and st.navigation returns a page without a title.
    if served or not st.runtime.exists() or page.title != "Atlas":
        return None
    fig = go.Figure()
    fig.add_annotation(
        text="the map appears here once the model and the dataset's latents are loaded",
        showarrow=False,
        font={"color": "grey", "size": 15},
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
    )
    fig.update_layout(
        height=520,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        plot_bgcolor="#f4f4f6",
        xaxis={"visible": False},
        yaxis={"visible": False},
    )
    slot = st.empty()
    with slot.container():
        st.title("Atlas")
        st.plotly_chart(fig, width="stretch", config={"displayModeBar": False})
    return slot


def atlas_served(slot) -> None:
    global served
    served = True
    if slot is not None:
        slot.empty()
