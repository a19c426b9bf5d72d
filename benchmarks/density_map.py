"""Drawing a large map in Chromium: the time from picking a recording to its Atlas map drawn, and
a box selection's round trip (drag → "N selected"), for the density map and the WebGL scatter
at the same sizes, against one server per run (explorer.density.DENSITY_ABOVE set per run).

The recordings are random 16×16 frames in one HDF5 file with synthetic latents and maps filed
in the app's cache (prefill_recording), so that no encoding or UMAP runs.

    python -m benchmarks.density_map [--sizes 20000 50000 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import h5py
import numpy as np

from benchmarks.load import ARGS, CHROMIUM, IDLE, MAP, ROOT, drag_box, pick_recording
from common import cache as cache_mod
from explorer import sources
from explorer.atlas import Atlas, map_path
from frames import ImageFolder, Normalization
from vae.checkpoint import load_checkpoint
from vae.latents import latents_path

# The server, with the density threshold of this run: Streamlit runs the app in this process.
SERVE = """
import sys
from explorer import density
density.DENSITY_ABOVE = int(sys.argv[1])
from streamlit.web import cli
sys.argv = ["streamlit", "run", "app.py", "--server.port", sys.argv[2],
            "--server.address", "127.0.0.1", "--server.headless", "true",
            "--browser.gatherUsageStats", "false"]
cli.main()
"""
DRAWN = """() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(
    () => resolve(true))))"""
REPEATS = 3  # box selections per run


def prefill_recording(root: Path, cache: Path, n: int) -> np.ndarray:
    """A recording of `n` random 16×16 frames in one HDF5 file under root/"rec" (the app resizes
    them to the model's 64²), with synthetic latents and maps filed in `cache` under the keys
    the app reads (vae.latents.latents_path, explorer.atlas.map_path), so that the Atlas opens
    at once: encoding 100k frames here would take minutes. Returns the map's coordinates."""
    rng = np.random.default_rng(0)
    (root / "rec").mkdir(parents=True)
    digit = rng.integers(0, 10, n)
    with h5py.File(root / "rec" / "run.h5", "w") as f:
        f["speckle"] = rng.integers(0, 255, (n, 16, 16), dtype=np.uint8)
        f["digit"] = digit
    centres = rng.normal(0, 4, (10, 2))
    coords = (centres[digit] + rng.normal(0, 1, (n, 2))).astype(np.float32)
    mu = rng.normal(0, 0.5, (n, 512)).astype(np.float32)
    mu[:, :2] = coords / 4
    saved = dict(os.environ)
    os.environ |= {"SPECKLE_VAE_CACHE": str(cache), sources.DATA_ROOT_ENV: str(root)}
    try:
        ck = load_checkpoint(sources.REPO / sources.DEMO_MODEL, lazy=True)
        path = sources.dataset_path("rec")
        norm = Normalization.from_dict(ck.config["preprocessing"]["normalization"])
        dataset = ImageFolder(
            str(path), ck.model_config.image_size, norm, scan_record=cache_mod.scan_record(path)
        )
        arrays = {
            "mu": mu,
            "logvar": np.full_like(mu, -2.0),
            "kl": rng.uniform(1, 2, n).astype(np.float32),
            "recon_error": rng.uniform(0, 1, n).astype(np.float32),
        }
        cache_mod.store(latents_path(ck, dataset), arrays, {"checkpoint": ck.id})
        atlas = Atlas(ck, dataset, mu, arrays["logvar"], arrays["recon_error"], arrays["kl"])
        for method in ("umap", "pca"):
            cache_mod.store(
                map_path(atlas, method, 15, 0.1, "euclidean"), {"coords": coords}, {"note": ""}
            )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return coords


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(n: int, dense: bool, root: Path, cache: Path) -> dict:
    """One server with the density threshold below (dense) or above n; the first map's time and
    REPEATS box selections' round trips."""
    # Lazy: Playwright is a dev requirement, needed by this benchmark only.
    from playwright.sync_api import sync_playwright

    port = _port()
    env = os.environ | {
        "SPECKLE_VAE_CACHE": str(cache),
        "SPECKLE_VAE_SIM_N": "40",
        sources.DATA_ROOT_ENV: str(root),
    }
    threshold = str(n - 1 if dense else n + 1)
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, threshold, str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            t0 = pick_recording(page, url, timeout_ms=180_000)
            page.get_by_text(f"dataset: {n} images").wait_for(timeout=120_000)
            page.wait_for_function(IDLE, timeout=120_000)
            page.locator(f"{MAP} .nsewdrag").first.wait_for(timeout=120_000)
            page.evaluate(DRAWN)
            first_map = time.perf_counter() - t0
            page.wait_for_timeout(1000)
            trips, counts = [], []
            for r in range(REPEATS):
                t0 = time.perf_counter()
                drag_box(page, 0.05 * r)
                heading = page.get_by_text(" selected; showing id ").first
                heading.wait_for(timeout=120_000)
                trips.append(time.perf_counter() - t0)
                counts.append(int(heading.inner_text().split()[0]))
                page.wait_for_function(IDLE, timeout=120_000)
                page.get_by_role("button", name="Clear selection").click()
                page.get_by_text("Nothing selected yet").wait_for(timeout=120_000)
                page.wait_for_function(IDLE, timeout=120_000)
                page.locator(MAP).first.scroll_into_view_if_needed()
                page.wait_for_timeout(500)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "n": n,
        "renderer": "density" if dense else "scattergl",
        "first_map_s": round(first_map, 2),
        "box_round_trip_s": [round(t, 2) for t in trips],
        "box_median_s": round(statistics.median(trips), 2),
        "selected": counts,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.density_map")
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 50_000, 100_000])
    args = p.parse_args(argv)
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="density-map-") as tmp:
            root, cache = Path(tmp) / "data", Path(tmp) / "cache"
            root.mkdir()
            cache.mkdir()
            prefill_recording(root, cache, n)
            for dense in (False, True):
                print(json.dumps(run(n, dense, root, cache)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
