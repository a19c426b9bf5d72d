"""The app stage of `python -m benchmarks.scale`: a server on the recording's cache, Chromium
picking the recording, and the times a user waits, with the server's memory and its map child's.

- first map: from picking the recording in the sidebar to its first (PCA) map drawn: opening the
  recording, reading the store, fitting PCA on every point, drawing;
- UMAP: from the pick to the UMAP map swapped in (the child's fit, numba compiled beforehand);
- box: a box drag on the map to its count on the page ("N selected"), then to the first
  selected frame's reconstruction;
- click: a click on a drawn point (pan mode) to "1 selected", then to that frame on the page.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from benchmarks.load import ARGS, CHROMIUM, IDLE, MAP, drag_box, pick_recording, start_server
from benchmarks.scale import MemoryWatch

# The recording's map is drawn: a density image, or a scatter trace of all n points.
DRAWN = """([sel, n, dense]) => {
    const el = document.querySelector(sel);
    if (!el || !el._fullData || !el._fullLayout) return false;
    if (dense) return (el.layout.images || []).length > 0;
    const drawn = el._fullData.reduce((k, t) => k + (t.x ? t.x.length : 0), 0);
    return drawn >= n && drawn <= n + 200;  // every point, and at most the selection's marks
}"""
BUSY = "is being computed in the background"
# The page position of the 100th point of the map's largest trace (every point of a scatter,
# the drawn sample of a density map).
POINT = """([sel]) => {
    const el = document.querySelector(sel);
    const t = el._fullData.reduce((a, b) => ((b.x || []).length > (a.x || []).length ? b : a));
    const L = el._fullLayout, box = el.getBoundingClientRect();
    const i = Math.min(100, t.x.length - 1);
    return [box.left + L._size.l + L.xaxis.l2p(t.x[i]), box.top + L._size.t + L.yaxis.l2p(t.y[i])];
}"""


def _wait_text(page, pattern: str, timeout: float) -> str:
    found = page.get_by_text(re.compile(pattern)).first
    found.wait_for(timeout=timeout * 1000)
    return found.inner_text()


def app_stage(work: Path, n: int, umap_timeout: float) -> dict:
    """The app stage's row; after `umap_timeout` s without the UMAP map, box and click are
    measured on the PCA map."""
    # Lazy: Playwright is a dev requirement, needed by this stage only.
    from playwright.sync_api import sync_playwright

    from explorer import density, sources

    dense = n > density.DENSITY_ABOVE
    env = {
        sources.DATA_ROOT_ENV: str(work / "data"),
        "NUMBA_CACHE_DIR": str(work.parent / "numba"),
    }
    proc, url = start_server(work / "cache", n=40, env=env)
    watch = MemoryWatch(proc.pid)
    row: dict = {"renderer": "density" if dense else "scattergl"}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            t0 = pick_recording(page, url, timeout_ms=300_000)
            page.wait_for_function(DRAWN, arg=[MAP, n, dense], timeout=1_800_000, polling=200)
            row["first_map_s"] = round(time.perf_counter() - t0, 2)
            try:
                page.get_by_text(BUSY).first.wait_for(state="detached", timeout=umap_timeout * 1000)
                page.wait_for_function(DRAWN, arg=[MAP, n, dense], timeout=600_000, polling=200)
                row["umap_s"] = round(time.perf_counter() - t0, 1)
            except Exception:  # Playwright's timeout: measured on the PCA map instead
                busy = page.get_by_text(BUSY).first
                row["umap_s"] = None
                row["umap_status"] = busy.inner_text() if busy.count() else "?"
            page.wait_for_function(IDLE, timeout=600_000)
            page.locator(MAP).first.scroll_into_view_if_needed()
            page.wait_for_timeout(1000)
            t0 = time.perf_counter()
            drag_box(page)
            text = _wait_text(page, r"^\d+ selected; showing id \d+$", 600)
            row["box_count_s"] = round(time.perf_counter() - t0, 2)
            row["box_selected"] = int(text.split()[0])
            page.get_by_text("reconstruction (z = μ)").first.wait_for(timeout=600_000)
            row["box_frame_s"] = round(time.perf_counter() - t0, 2)
            page.wait_for_function(IDLE, timeout=600_000)
            page.get_by_role("button", name="Clear selection").click()
            page.get_by_text("Nothing selected yet").wait_for(timeout=600_000)
            page.wait_for_function(IDLE, timeout=600_000)
            page.locator(MAP).first.scroll_into_view_if_needed()
            page.locator(f'{MAP} .modebar-btn[data-title="Pan"]').click()
            cx, cy = page.evaluate(POINT, [MAP])
            page.mouse.move(cx, cy, steps=3)
            page.wait_for_timeout(500)
            t0 = time.perf_counter()
            page.mouse.click(cx, cy)
            text = _wait_text(page, r"^1 selected: id \d+$", 600)
            row["click_count_s"] = round(time.perf_counter() - t0, 2)
            frame = int(text.rsplit(" ", 1)[1])
            page.get_by_text(f"input #{frame}").first.wait_for(timeout=600_000)
            page.get_by_text("reconstruction (z = μ)").first.wait_for(timeout=600_000)
            row["click_frame_s"] = round(time.perf_counter() - t0, 2)
            row["exceptions"] = page.locator('[data-testid="stException"]').count()
            browser.close()
    finally:
        row["memory"] = watch.stop()
        proc.terminate()
        proc.wait(timeout=60)
    return row


def _gb(memory: dict, name: str) -> str:
    m = memory.get(name)
    return f"{m['peak_rss_gb']:.2f} ({m['peak_anon_gb']:.2f})" if m else "–"


def render(work: Path, sizes: list[int]) -> str:
    """docs/benchmarks.md's scale table from WORK/N/stages.json."""
    lines = [
        "| frames | simulate | encode (frames/s; × bare) | first map | UMAP map | box: count, "
        "frame | click: count, frame | memory, GB: encode · server · map child |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        path = work / str(n) / "stages.json"
        if not path.exists():
            continue
        st = json.loads(path.read_text())
        sim, enc, app = st.get("simulate", {}), st.get("encode", {}), st.get("app", {})
        mem = app.get("memory", {})
        cells = [
            f"{n:,}",
            f"{sim['seconds']:.0f} s" if sim else "–",
            f"{enc['seconds']:.0f} s ({enc['frames_per_second']:.0f}; {enc['ratio']:.2f})"
            if enc
            else "–",
            f"{app['first_map_s']:.1f} s" if app else "–",
            (f"{app['umap_s']:.0f} s" if app.get("umap_s") else "not done") if app else "–",
            f"{app['box_count_s']:.2f}, {app['box_frame_s']:.2f} s" if app else "–",
            f"{app['click_count_s']:.2f}, {app['click_frame_s']:.2f} s" if app else "–",
            " · ".join(
                [
                    _gb(enc.get("memory", {}), "explorer.encode"),
                    _gb(mem, "streamlit"),
                    _gb(mem, "explorer.map_process"),
                ]
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
