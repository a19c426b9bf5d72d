"""The pieces of `python -m benchmarks.scale` that run without a browser: the recording it
simulates is read by the app's readers, its memory watch sees a child's allocation, and its
table is rendered from recorded stages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import scale
from benchmarks.scale_app import render
from frames import ImageFolder, Normalization


def test_the_simulated_recording_is_one_hdf5_file_the_readers_open(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(scale, "BLOCK", 128)  # three blocks, the last one short
    row = scale.simulate(tmp_path, 300)
    assert row["bytes"] > 300 * 64 * 64 * 2  # uint16 frames
    dataset = ImageFolder(scale.recording(tmp_path), 64, Normalization())
    assert len(dataset) == 300 and "digit" in dataset.labels.columns
    first, last = dataset.image(0), dataset.image(299)
    assert first.shape == (64, 64) and first.std() > 0 and last.std() > 0
    assert not np.allclose(first, last)
    assert set(dataset.labels["digit"]) <= set(range(10))
    assert not list(scale.recording(tmp_path).glob("*.part"))


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_memory_watch_sees_a_childs_anonymous_memory() -> None:
    # A parent that starts, from a worker thread, a child holding 320 MB.
    child = "import numpy, time; a = numpy.ones(40_000_000); time.sleep(1.5)"
    code = (
        "import subprocess, sys, threading\n"
        f"t = threading.Thread(target=subprocess.run, args=([sys.executable, '-c', {child!r}],))\n"
        "t.start(); t.join()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    watch = scale.MemoryWatch(proc.pid)
    proc.wait()
    peaks = watch.stop()
    assert len(peaks) == 2, peaks  # the parent and its child, each by name
    top = max(v["peak_anon_gb"] for v in peaks.values())
    assert 0.29 < top < 1.0, peaks


def test_the_table_is_rendered_from_recorded_stages(tmp_path: Path) -> None:
    mem = {"peak_rss_gb": 1.5, "peak_anon_gb": 0.5}
    stages = {
        "simulate": {"seconds": 3.0},
        "encode": {
            "seconds": 23.0,
            "frames_per_second": 430.0,
            "ratio": 0.85,
            "memory": {"explorer.encode": mem},
        },
        "app": {
            "first_map_s": 2.5,
            "umap_s": None,
            "box_count_s": 0.61,
            "box_frame_s": 0.93,
            "click_count_s": 0.4,
            "click_frame_s": 0.7,
            "memory": {"streamlit": mem},
        },
    }
    (tmp_path / "10000").mkdir()
    (tmp_path / "10000" / "stages.json").write_text(json.dumps(stages))
    table = render(tmp_path, [10000, 100000])
    lines = table.splitlines()
    assert len(lines) == 3  # header, rule, the one size recorded
    assert "| 10,000 | 3 s | 23 s (430; 0.85) | 2.5 s | not done | 0.61, 0.93 s |" in lines[2]
    assert "1.50 (0.50) · 1.50 (0.50) · –" in lines[2]
