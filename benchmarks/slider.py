"""Server-side rerun time of a traversal slider move (AppTest, the real Traverse page) against a
bare Streamlit app with one slider, one image and one decode of the demo model (through the
app's decode path), in the same run.

A move in a browser reruns only the slider fragment (st.fragment), so that is the figure held to
the limit: AppTest's runner is asked for the fragment rerun, as Streamlit's server does. The
whole-page rerun that AppTest's run() performs (what a change outside the fragment costs: the
start, K, the sidebar) is reported beside it.

    python -m benchmarks.slider
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import streamlit_internals

ROOT = Path(__file__).resolve().parents[1]

# The decode is the app's own one-latent path (decode_interactive, on the interactive thread), so
# that the ratio measures the page, not a faster decoder.
BARE = f'''
import numpy as np
import streamlit as st
from explorer.serving import decode_interactive
from vae.checkpoint import load_checkpoint

@st.cache_resource
def model():
    return load_checkpoint("{ROOT / "models" / "demo"}").model

v = st.slider("z0", -3.0, 3.0, 0.0, 0.1, key="s")
z = np.zeros((1, 512), np.float32)
z[0, 0] = v
img = decode_interactive(model(), z)[0]
st.image(np.clip(img, 0, 1), width=256)
'''

# A second reference: the same page decoding with the plain torch module, eager, in the
# script's thread (each AppTest run is a new thread, whose first torch op builds an OpenMP
# team), which shows what the interactive thread saves. The limit is checked against BARE.
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


def _value(i: int) -> float:
    return round(((i % 12) - 6) * 0.5, 1) or 0.5


def _move(at, key: str, i: int) -> float:
    t0 = time.perf_counter()
    at.slider(key=key).set_value(_value(i)).run()
    elapsed = time.perf_counter() - t0
    assert not at.exception, at.exception
    return elapsed


class FragmentMoves:
    """Slider moves as a server sees them from a browser: the browser sends every widget's
    state with the id of the fragment that holds the moved slider, and the server reruns that
    fragment alone. AppTest's own run() always reruns the whole script, so this asks its script
    runner for the fragment rerun, with the widget states of the last whole-page run."""

    def __init__(self, at, key: str) -> None:
        self.at, self.key = at, key
        with streamlit_internals.forwarded_messages() as msgs:
            at.run()  # a whole-page run, to read which fragment holds the slider
        slider_id = at.slider(key=key).id
        self.fragment_id = next(
            m.delta.fragment_id
            for m in msgs
            if m.HasField("delta") and m.delta.new_element.slider.id == slider_id
        )
        assert self.fragment_id, f"slider {key} is not inside a fragment"
        self.page = streamlit_internals.page_tree(at)  # the page whose widget states a move sends

    def move(self, i: int) -> float:
        self.page.slider(key=self.key).set_value(_value(i))
        states = self.page.get_widget_states()
        t0 = time.perf_counter()
        streamlit_internals.rerun_fragment(self.at, self.fragment_id, states)
        elapsed = time.perf_counter() - t0
        assert not self.at.exception, self.at.exception
        return elapsed

    def image(self) -> str:
        """The decoded image's media URL (its content hash) after the last move."""
        return next(url for el in self.at.get("image") for url in el.value)


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
    # A second session of the same app for the fragment reruns (AppTest holds one session).
    frag_app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    frag_app.session_state["atlas_method"] = "PCA"
    frag_app.switch_page("views/traverse.py").run()
    frag = FragmentMoves(frag_app, key)
    seen = set()
    for i in range(5):  # warm-up: first decodes, caches
        _move(bare, "s", i), _move(torch_bare, "s", i), _move(app, key, i), frag.move(i)
        seen.add(frag.image())
    # The fragment rerun really decodes: different slider values give different images.
    assert len(seen) > 1, "the fragment rerun did not change the decoded image"
    # Interleaved, so that a busy neighbour on the machine slows every side alike.
    t_bare, t_torch, t_app, t_frag = [], [], [], []
    for i in range(moves):
        t_bare.append(_move(bare, "s", i))
        t_torch.append(_move(torch_bare, "s", i))
        t_frag.append(frag.move(i))
        t_app.append(_move(app, key, i))
    a, b, c = statistics.median(t_app), statistics.median(t_bare), statistics.median(t_torch)
    f = statistics.median(t_frag)
    return [
        {
            "benchmark": "slider_rerun[traverse,apptest]",
            "app_seconds": f,
            "bare_seconds": b,
            "ratio": f / b,
            "whole_page_seconds": a,
            "whole_page_ratio": a / b,
            "bare_torch_eager_seconds": c,
            "ratio_to_torch_eager_bare": f / c,
        }
    ]


def main() -> int:
    for r in run():
        print(json.dumps(r))
        print(
            f"slider move (the slider fragment's rerun, as a browser's move asks): app "
            f"{r['app_seconds'] * 1e3:.1f} ms, bare app {r['bare_seconds'] * 1e3:.1f} ms, "
            f"ratio {r['ratio']:.2f} (limit 2); whole-page rerun {r['whole_page_seconds'] * 1e3:.1f} ms "
            f"({r['whole_page_ratio']:.2f}); bare app decoding with torch eager "
            f"{r['bare_torch_eager_seconds'] * 1e3:.1f} ms ({r['ratio_to_torch_eager_bare']:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
