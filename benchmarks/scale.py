"""A whole recording, end to end, at N = 10k, 100k and 1M frames of 64×64: simulate it into one
HDF5 file, encode it with the demo VAE into the float16 store (`python -m explorer.encode`),
then open it in the app in Chromium: the first (PCA) map on screen, the UMAP map complete, a box
selection's count, and a click's frame. Each stage's time and peak memory go to
WORK/N/stages.json; a stage already recorded there is skipped, so a long run can be stopped and
continued (the encode itself resumes at its first unfinished chunk).

    python -m benchmarks.scale --work /big/disk/scale [--sizes 10000 100000 1000000]
    python -m benchmarks.scale --work /big/disk/scale --only simulate encode
    python -m benchmarks.scale --work /big/disk/scale --render   # the table for docs/benchmarks.md

Memory is read from /proc: each process's peak resident set (VmHWM) and the largest anonymous
resident set (RssAnon) seen while sampling every 0.5 s. The anonymous part is what the process
holds itself; the rest of its resident set is pages of memory-mapped files (the HDF5 file and
the latent store), which the kernel drops under pressure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.load import ROOT, progress
from common.atomic import atomic_write

SIZES = [10_000, 100_000, 1_000_000]
STAGES = ("simulate", "encode", "app")
BLOCK = 20_000  # frames simulated at a time
BARE_FRAMES = 4096  # the bare encoder's reference sample


def _status(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS and RssAnon of a process in bytes; {} once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _children(pid: int) -> list[int]:
    """A process's children, whichever of its threads started them (the map child is started
    from a worker thread)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


class MemoryWatch:
    """Samples a process and its descendants every 0.5 s until stopped: per command name, the
    peak resident set (VmHWM) and the largest anonymous resident set."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peaks: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _name(self, pid: int) -> str:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return "?"
        words = [a.decode(errors="replace") for a in argv if a]
        if "-m" in words:
            return words[words.index("-m") + 1]
        return "server" if pid == self.pid else Path(words[0]).name if words else "?"

    def _sample(self) -> None:
        todo = [self.pid]
        while todo:
            pid = todo.pop()
            todo += _children(pid)
            st = _status(pid)
            if not st:
                continue
            peak = self.peaks.setdefault(self._name(pid), {"hwm": 0, "anon": 0})
            peak["hwm"] = max(peak["hwm"], st.get("VmHWM", 0))
            peak["anon"] = max(peak["anon"], st.get("RssAnon", 0))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.5)

    def stop(self) -> dict[str, dict[str, float]]:
        self._sample()
        self._stop.set()
        self._thread.join()
        gb = 1024**3
        return {
            k: {"peak_rss_gb": round(v["hwm"] / gb, 3), "peak_anon_gb": round(v["anon"] / gb, 3)}
            for k, v in self.peaks.items()
        }


def _record(work: Path, stage: str, row: dict, started: dict) -> None:
    path = work / "stages.json"
    stages = json.loads(path.read_text()) if path.exists() else {}
    stages[stage] = row | started
    atomic_write(path, json.dumps(stages, indent=2))


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


def recording(work: Path) -> Path:
    return work / "data" / "rec"


def simulate(work: Path, n: int) -> dict:
    """N frames of the default fibre (64×64, bundled training digits) in one contiguous HDF5
    dataset /speckle (uint16, one intensity scale from the first block) with /digit and
    /frame_index beside, written BLOCK frames at a time and renamed into place."""
    # Lazy: h5py and the simulator are needed by this stage only.
    import h5py

    from speckle.io import png_scale
    from speckle.mmf import simulate_mmf

    out = recording(work)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "run.h5.part"
    t0 = time.perf_counter()
    with h5py.File(tmp, "w") as f:
        frames = f.create_dataset("speckle", (n, 64, 64), np.uint16)
        digits = f.create_dataset("digit", (n,), np.int64)
        scale = None
        for start in range(0, n, BLOCK):
            k = min(BLOCK, n - start)
            sim = simulate_mmf(k, seed=1000 + start // BLOCK)
            scale = png_scale(sim.images) if scale is None else scale
            frames[start : start + k] = np.clip(np.rint(sim.images * scale), 0, 65535)
            digits[start : start + k] = sim.labels["digit"].to_numpy()
            progress(f"scale[n={n}]: simulated {start + k} frames")
    os.replace(tmp, out / "run.h5")
    return {"seconds": round(time.perf_counter() - t0, 1), "bytes": (out / "run.h5").stat().st_size}


def bare_fps(data: Path, batch_size: int = 256) -> float:
    """The demo encoder's frames/s on BARE_FRAMES of the recording, already in memory."""
    # Lazy: torch, for this reference only.
    import torch

    from frames import ImageFolder, Normalization
    from vae.checkpoint import load_checkpoint

    ck = load_checkpoint(ROOT / "models" / "demo")
    norm = Normalization.from_dict(ck.config["preprocessing"]["normalization"])
    ds = ImageFolder(str(data), ck.model_config.image_size, norm, log=lambda m: None)
    images = torch.stack([ds[i] for i in range(min(BARE_FRAMES, len(ds)))])
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            ck.model.encode(images[i : i + batch_size])
    return len(images) / (time.perf_counter() - t0)


def encode(work: Path, n: int) -> dict:
    """`python -m explorer.encode --no-errors` into WORK/cache, in a child whose memory is
    watched, between two measures of the bare encoder's speed."""
    env = os.environ | {"SPECKLE_VAE_CACHE": str(work / "cache")}
    before = bare_fps(recording(work))
    args = ["--checkpoint", str(ROOT / "models" / "demo"), "--data", str(recording(work))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "explorer.encode", *args, "--no-errors", "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    watch = MemoryWatch(proc.pid)
    out, _ = proc.communicate()
    memory = watch.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"explorer.encode exited with {proc.returncode}")
    figures = json.loads(out.strip().splitlines()[-1])
    after = bare_fps(recording(work))
    bare = (before + after) / 2
    return {
        "seconds": figures["seconds"],
        "frames_per_second": figures["frames_per_second"],
        "encoded_now": figures["encoded_now"],
        "bare_frames_per_second": [round(before, 1), round(after, 1)],
        "ratio": round(figures["frames_per_second"] / bare, 3),
        "memory": memory,
    }


def run(work: Path, sizes: list[int], only: list[str], umap_timeout: float) -> None:
    for n in sizes:
        wn = work / str(n)
        wn.mkdir(parents=True, exist_ok=True)
        path = wn / "stages.json"
        for stage in only:
            done = json.loads(path.read_text()) if path.exists() else {}
            if stage in done:
                progress(f"scale[n={n}]: {stage} already recorded in {path}")
                continue
            started = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            started["commit"] = _commit()
            if stage == "simulate":
                row = simulate(wn, n)
            elif stage == "encode":
                row = encode(wn, n)
            else:
                # Lazy: Playwright and the server are needed by this stage only.
                from benchmarks.scale_app import app_stage

                row = app_stage(wn, n, umap_timeout)
            _record(wn, stage, row, started)
            progress(f"scale[n={n}]: {stage} {json.dumps(row)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    p.add_argument("--work", required=True, type=Path, help="where data, caches and rows go")
    p.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    p.add_argument("--only", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--umap-timeout", type=float, default=1800.0, help="s to wait for the UMAP map")
    p.add_argument("--render", action="store_true", help="print the table from recorded rows")
    args = p.parse_args(argv)
    if args.render:
        # Lazy: the table's module, for --render only.
        from benchmarks.scale_app import render

        print(render(args.work, args.sizes))
        return 0
    run(args.work, args.sizes, args.only, args.umap_timeout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
