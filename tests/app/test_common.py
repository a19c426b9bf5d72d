"""The shared UI helpers that every slider move goes through."""

from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image

from views.common import LRU, MAP_PALETTE, marker_map, palette_png, to_png


def test_lru_computes_once_and_stays_bounded() -> None:
    cache, calls = LRU(2), []

    def make(key):
        return lambda: calls.append(key) or f"value {key}"

    assert cache.get("a", make("a")) == "value a"
    assert cache.get("a", make("a")) == "value a"
    assert calls == ["a"]
    cache.get("b", make("b"))
    cache.get("a", make("a"))  # a is now the most recent...
    cache.get("c", make("c"))  # ...so b is the one dropped
    cache.get("a", make("a"))
    cache.get("b", make("b"))
    assert calls == ["a", "b", "c", "b"]
    # Many threads at once: every caller gets a value, the cache keeps its bound.
    out = []
    threads = [threading.Thread(target=lambda i=i: out.append(cache.get(i % 5, make(i % 5))))
               for i in range(40)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 40 and len(cache._items) <= 2


def test_marker_map_draws_the_samples_and_a_cross_where_asked() -> None:
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
    img = marker_map(coords, np.array([1.0, 1.0]), size=64)
    assert img.shape == (64, 64) and img.dtype == np.uint8
    ys, xs = np.nonzero(img == 2)
    # y is up, as on the Atlas: the top-right sample carries the cross.
    assert xs.mean() > 48 and ys.mean() < 16
    assert (img == 1).sum() >= 3 * 4  # the other three samples, 2×2 px each
    moved = marker_map(coords, np.array([0.0, 0.0]), size=64)
    ys, xs = np.nonzero(moved == 2)
    assert xs.mean() < 16 and ys.mean() > 48
    # The backdrop is cached per coordinate array, not shared between arrays.
    other = marker_map(coords[:2].copy(), np.array([0.0, 0.0]), size=64)
    assert (other == 1).sum() < (moved == 1).sum()


def test_pngs_are_lossless() -> None:
    indices = np.random.default_rng(0).integers(0, 3, (32, 32)).astype(np.uint8)
    with Image.open(io.BytesIO(palette_png(indices, MAP_PALETTE))) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), indices)
        assert im.getpalette()[:9] == MAP_PALETTE
    gray = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    with Image.open(io.BytesIO(to_png(gray, scale=3))) as im:
        assert im.size == (48, 48)
        px = np.asarray(im)
    np.testing.assert_array_equal(px[::3, ::3], (gray * 255).round().astype(np.uint8))


def test_app_script_runs_outside_a_server(tmp_path) -> None:
    """After an AppTest run, __main__ is app.py, and a process started with "spawn" (DataLoader
    workers on macOS and Windows, or any spawn context) runs it again outside any server: every
    Streamlit call is then a no-op, and nothing may fail (the navigation once did)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"SPECKLE_VAE_CACHE": str(tmp_path), "SPECKLE_VAE_SIM_N": "60",
                        "PYTHONPATH": str(root)}  # fmt: skip
    code = "import runpy; runpy.run_path('app.py', run_name='__mp_main__'); print('done')"
    res = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("done")


NICE_WORKER = """
import os, sys, threading
from explorer.tasks import Task
from vae.checkpoint import load_checkpoint
from views import common  # creates the interactive thread, at this thread's priority

ck = load_checkpoint(sys.argv[1], lazy=True)
ck.prepare = common._prepare
task = Task("model", lambda: ck.model is not None, nice=common.BACKGROUND_NICE).start()
print(task.wait(120), task.error)
from vae.inference import decode_interactive, on_interactive_thread
import numpy as np
decode_interactive(ck.model, np.zeros((1, ck.model_config.latent_dim), np.float32))
worker = on_interactive_thread(threading.get_native_id)
print(os.getpriority(os.PRIO_PROCESS, worker), os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
"""


def test_interactive_thread_keeps_normal_priority_when_a_background_task_builds_the_model() -> None:
    """On a cached start the model is first built by a background task at nice +10; the
    interactive thread, which every session's decodes run on, must not inherit that."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not hasattr(os, "getpriority"):
        import pytest

        pytest.skip("per-thread priorities are a Linux feature")
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", NICE_WORKER, str(root / "models" / "demo")], cwd=root,
                         env=os.environ | {"PYTHONPATH": str(root)}, capture_output=True, text=True,
                         timeout=180)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    built, priorities = res.stdout.strip().splitlines()[-2:]
    assert built == "True None"
    worker, main = map(int, priorities.split())
    assert worker == main  # not the background task's +10
