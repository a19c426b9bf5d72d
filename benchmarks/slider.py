"""Server-side rerun time of a traversal slider move (AppTest, the real Traverse page) against a
bare Streamlit app with one slider, one image and one decode of the demo model, in the same run.

    python -m benchmarks.slider
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BARE = f'''
import numpy as np
import streamlit as st
import torch
from vae.checkpoint import load_checkpoint

@st.cache_resource
def model():
    return load_checkpoint("{ROOT / "models" / "demo"}").model

v = st.slider("z0", -3.0, 3.0, 0.0, 0.1, key="s")
z = torch.zeros(1, 512)
z[0, 0] = v
with torch.inference_mode():
    img = model().decode(z)[0, 0].numpy()
st.image(np.clip(img, 0, 1), width=256)
'''


def _move(at, key: str, i: int) -> float:
    value = round(((i % 12) - 6) * 0.5, 1) or 0.5
    t0 = time.perf_counter()
    at.slider(key=key).set_value(value).run()
    elapsed = time.perf_counter() - t0
    assert not at.exception, at.exception
    return elapsed


def run(moves: int = 40) -> list[dict]:
    from streamlit.testing.v1 import AppTest

    os.environ.setdefault("SPECKLE_VAE_SIM_N", "400")
    os.environ.setdefault("SPECKLE_VAE_CACHE", tempfile.mkdtemp(prefix="bench-cache-"))
    bare = AppTest.from_string(BARE, default_timeout=120)
    bare.run()
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    app.session_state["atlas_method"] = "PCA"
    app.switch_page("views/traverse.py").run()
    key = next(s.key for s in app.slider if s.key and s.key.startswith("trav_"))
    for i in range(5):  # warm-up: first decodes, caches
        _move(bare, "s", i), _move(app, key, i)
    # Interleaved, so that a slow spell of this shared machine hits both sides alike.
    t_bare, t_app = [], []
    for i in range(moves):
        t_bare.append(_move(bare, "s", i))
        t_app.append(_move(app, key, i))
    a, b = statistics.median(t_app), statistics.median(t_bare)
    return [{"benchmark": "slider_rerun[traverse,apptest]", "app_seconds": a, "bare_seconds": b,
             "ratio": a / b}]  # fmt: skip


def main() -> int:
    for r in run():
        print(json.dumps(r))
        print(f"slider move: app {r['app_seconds'] * 1e3:.1f} ms, bare app {r['bare_seconds'] * 1e3:.1f} ms, "
              f"ratio {r['ratio']:.2f} (limit 2)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
