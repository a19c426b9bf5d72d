"""Server-side rerun time of a traversal slider move (AppTest, the real Traverse page) against a
bare Streamlit app with one slider, one image and one decode of the demo model (through the
app's decode path), in the same run.

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

# The decode is the app's own one-latent path (for_interactive_use, then decode_interactive:
# ONNX Runtime on the CPU), so that the ratio measures the page, not a faster decoder.
BARE = f'''
import numpy as np
import streamlit as st
from vae.checkpoint import load_checkpoint
from vae.inference import decode_interactive, for_interactive_use

@st.cache_resource
def model():
    return for_interactive_use(load_checkpoint("{ROOT / "models" / "demo"}").model)

v = st.slider("z0", -3.0, 3.0, 0.0, 0.1, key="s")
z = np.zeros((1, 512), np.float32)
z[0, 0] = v
img = decode_interactive(model(), z)[0]
st.image(np.clip(img, 0, 1), width=256)
'''

# Earlier stops' reference: the same page decoding with the plain torch module, eager, in the
# script's thread (each AppTest run is a new thread, whose first torch op builds an OpenMP
# team). Kept for comparison with their figures; the limit is checked against BARE.
BARE_TORCH = f'''
import numpy as np
import streamlit as st
import torch
from vae.checkpoint import load_checkpoint

@st.cache_resource
def model():
    return load_checkpoint("{ROOT / "models" / "demo"}").model.eval()

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
    torch_bare = AppTest.from_string(BARE_TORCH, default_timeout=120)
    torch_bare.run()
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    app.session_state["atlas_method"] = "PCA"
    app.switch_page("views/traverse.py").run()
    key = next(s.key for s in app.slider if s.key and s.key.startswith("trav_"))
    for i in range(5):  # warm-up: first decodes, caches
        _move(bare, "s", i), _move(torch_bare, "s", i), _move(app, key, i)
    # Interleaved, so that a slow spell of this shared machine hits both sides alike.
    t_bare, t_torch, t_app = [], [], []
    for i in range(moves):
        t_bare.append(_move(bare, "s", i))
        t_torch.append(_move(torch_bare, "s", i))
        t_app.append(_move(app, key, i))
    a, b, c = statistics.median(t_app), statistics.median(t_bare), statistics.median(t_torch)
    return [{"benchmark": "slider_rerun[traverse,apptest]", "app_seconds": a, "bare_seconds": b,
             "ratio": a / b, "bare_torch_eager_seconds": c, "ratio_to_torch_eager_bare": a / c}]  # fmt: skip


def main() -> int:
    for r in run():
        print(json.dumps(r))
        print(f"slider move: app {r['app_seconds'] * 1e3:.1f} ms, bare app {r['bare_seconds'] * 1e3:.1f} ms, "
              f"ratio {r['ratio']:.2f} (limit 2); bare app decoding with torch eager "
              f"{r['bare_torch_eager_seconds'] * 1e3:.1f} ms ({r['ratio_to_torch_eager_bare']:.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
