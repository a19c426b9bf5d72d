"""Each concurrency mechanism of the app against its plain variant, in one run, for 1 and 4
browser sessions (benchmarks.load's sessions in Chromium). Variants alternate run by run
(ABAB...), so that load from other jobs on the machine falls on both sides alike; each row
reports the median over the repeats and the range.

- slider: key press → changed image on Traverse, UMAP already fitted; with every mechanism, and
  without the interactive thread ("serving");
- umap: the same moves while a cold UMAP fit runs (the map and numba caches emptied), with the
  fit in a child process and without ("map_process": fitted in a thread at the same nice value);
- job: the same moves while a Retrain job (another session's, started on the Retrain page and
  kept open) fine-tunes the model, with the job in a `vae.train` subprocess and without ("jobs":
  `vae.train` in a server thread);
- first_map: K sessions open the Atlas page of a server whose latents, maps and numba caches are
  empty; seconds from the page request to the map on screen. (Deferring and renicing background
  tasks was measured here against starting them at once, moved it by less than 10%, and went.)

The plain variants are chosen by SPECKLE_VAE_BENCH_PLAIN (comma-separated names), a benchmark
switch only.

    python -m benchmarks.concurrency [--repeats 2] [--seconds 12] [--only slider umap job first_map]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.load import ARGS, CHROMIUM, MAP, level, progress, start_server, wait_for_umap

VARIANTS = {
    "slider": ["", "serving"],
    "umap": ["", "map_process"],
    "job": ["", "jobs"],
    "first_map": [""],
}


def _stop(server) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except Exception:  # noqa: BLE001 (a fit in a thread may hold the exit: kill it)
        server.kill()
        server.wait()


def _template(root: Path, n: int) -> Path:
    """A cache with the simulated set, its latents, the UMAP map and numba's JIT cache."""
    cache = root / "template"
    server, url = start_server(cache, n=n, env={"NUMBA_CACHE_DIR": str(cache / "numba")})
    try:
        asyncio.run(wait_for_umap(url))
    finally:
        _stop(server)
    return cache


def _copy(template: Path, dest: Path, drop: tuple[str, ...]) -> Path:
    shutil.copytree(
        template,
        dest,
        ignore=lambda d, names: [x for x in names if x in drop and d == str(template)],
    )
    return dest


async def _first_maps(url: str, k: int) -> list[float]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)

        async def one() -> float:
            page = await browser.new_page(viewport={"width": 1300, "height": 950})
            t0 = time.perf_counter()
            await page.goto(url, wait_until="commit")
            await page.locator(MAP).first.wait_for(timeout=300_000)
            return time.perf_counter() - t0

        times = await asyncio.gather(*(one() for _ in range(k)))
        await browser.close()
    return sorted(times)


async def _warm(url: str) -> None:
    """One visit that loads the atlas and torch, as benchmarks.load's warm-up does: a session's
    box-select on the very first page of a server can be lost to that page's own reruns."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = await browser.new_page()
        await page.goto(url)
        await page.locator(MAP).first.wait_for(timeout=120_000)
        status = page.locator('[data-testid="stStatusWidget"]')
        await status.wait_for(state="detached", timeout=120_000)
        await browser.close()


async def _with_job(url: str, k: int, seconds: float) -> dict:
    """Slider moves of K sessions while one more session's Retrain job trains: the job is started
    on the Retrain page, which stays open (its heartbeat keeps the job alive), and is running
    before the first timed move."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = await browser.new_page(viewport={"width": 1300, "height": 950})
        await page.goto(url)
        await page.locator(MAP).first.wait_for(timeout=120_000)
        await page.locator('[data-testid="stSidebarNav"] a', has_text="Retrain").click()
        steps = page.locator(".st-key-rt_steps input")
        await steps.wait_for(timeout=120_000)
        await steps.fill("20000")  # longer than the timed moves: the job trains throughout
        await steps.press("Enter")
        await page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached")
        await page.locator(".st-key-rt_start_btn button").click()
        # Training, not still starting: a first logged step.
        done = re.compile(r"\b[1-9]\d* of \d+ steps over all runs")
        await page.get_by_text(done).first.wait_for(timeout=300_000)
        row = await level(url, k, seconds)
        await browser.close()
    return row


def _job_steps(root: Path) -> int:
    steps = [
        json.loads(line).get("step", 0)
        for path in root.glob("*/*/metrics.jsonl")
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    return max(steps, default=0)


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def one_run(
    kind: str, plain: str, k: int, template: Path, root: Path, seconds: float, n: int
) -> dict:
    drop = {
        "slider": (),
        "job": (),
        "umap": ("maps", "numba"),
        "first_map": ("maps", "numba", "latents"),
    }[kind]
    cache = _copy(template, root / f"run-{time.monotonic_ns()}", drop)
    env = {"SPECKLE_VAE_BENCH_PLAIN": plain, "NUMBA_CACHE_DIR": str(cache / "numba")}
    server, url = start_server(cache, n=n, env=env)
    try:
        if kind == "first_map":
            times = asyncio.run(_first_maps(url, k))
            row = {"p50": statistics.median(times), "p95": _pct(times, 0.95), "n": len(times)}
        else:
            asyncio.run(_warm(url))
            if kind == "job":
                r = asyncio.run(_with_job(url, k, seconds))
            else:
                r = asyncio.run(level(url, k, seconds))
            umap_done = (cache / "maps").is_dir() and any((cache / "maps").iterdir())
            if kind == "job":  # the job trained during the moves: its last logged step
                r["job_steps"] = _job_steps(cache / "jobs")
            row = {
                "p50": r["p50_seconds"],
                "p95": r["p95_seconds"],
                "n": r["moves"],
                "errors": r["errors"],
                "umap_done_at_end": umap_done,
                "messages": r["messages"],
            } | ({"job_steps": r["job_steps"]} if "job_steps" in r else {})
    finally:
        _stop(server)
        shutil.rmtree(cache, ignore_errors=True)
    return row


def run(
    kinds: tuple[str, ...],
    repeats: int = 2,
    seconds: float = 12.0,
    n: int = 2000,
    sessions: tuple[int, ...] = (1, 4),
) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = _template(root, n)
        progress("concurrency: template cache ready")
        raw: dict[tuple, list[dict]] = {}
        for kind in kinds:
            for rep in range(repeats):
                for k in sessions:
                    for plain in VARIANTS[kind]:  # with, then each plain variant: ABAB...
                        row = one_run(kind, plain, k, template, root, seconds, n)
                        raw.setdefault((kind, plain or "with", k), []).append(row)
                        progress(f"{kind} K={k} {plain or 'with'} #{rep}: {json.dumps(row)}")
    out = []
    for (kind, variant, k), rows in raw.items():
        p50s, p95s = [r["p50"] for r in rows], [r["p95"] for r in rows]
        out.append(
            {
                "benchmark": f"concurrency[{kind},K={k},{variant}]",
                "p50_median": statistics.median(p50s),
                "p50_range": [min(p50s), max(p50s)],
                "p95_median": statistics.median(p95s),
                "p95_range": [min(p95s), max(p95s)],
                "runs": rows,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.concurrency")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seconds", type=float, default=12.0, help="timed slider moves per run")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 4])
    args = p.parse_args(argv)
    for r in run(tuple(args.only), args.repeats, args.seconds, sessions=tuple(args.sessions)):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
