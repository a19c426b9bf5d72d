from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180  # the first run generates the simulated set and encodes it


@pytest.fixture(scope="session")
def app_env(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("app-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SPECKLE_VAE_CACHE", str(cache))
    mp.setenv("SPECKLE_VAE_SIM_N", "300")
    mp.setenv("SPECKLE_VAE_RUNS_ROOT", str(tmp_path_factory.mktemp("runs")))
    yield cache
    mp.undo()


@pytest.fixture
def app(app_env) -> AppTest:
    # Streamlit's caches outlive an AppTest instance; start every test from a clean slate.
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["atlas_method"] = "PCA"  # keep UMAP's numba compile out of page tests
    return at


def image_urls(at: AppTest) -> list[str]:
    """The media URLs of every st.image on the page; they change when the pixels do."""
    return [url for el in at.get("image") for url in el.value]


def image_captions(at: AppTest) -> list[str]:
    return [c for el in at.get("image") for c in el.captions]


def all_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [h.value for h in at.title] + [h.value for h in at.subheader]
    parts += [m.value for m in at.sidebar.markdown]
    return "\n".join(parts)
