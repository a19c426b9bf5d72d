"""A Generate click in Chromium: seconds from the click to the new samples on screen (the
page's default samples, sampler, steps and guidance; target under 1 s on 2 cores), beside a plain rerun of the same
page measured in the same run (a seed change, which redraws the last result without sampling).

    python -m benchmarks.generate_click
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.load import ARGS, CHROMIUM, start_server
from diffusion.sampling import GUIDANCE, SAMPLER, SAMPLES, STEPS

LIMIT_SECONDS = 1.0
SAMPLE_IMAGES = '.st-key-gen_samples [data-testid="stImage"] img'


def _seed(page, seed: int) -> float:
    """Type a seed and wait for the rerun that says the settings changed: a plain rerun."""
    box = page.locator(".st-key-gen_seed input")
    t0 = time.perf_counter()
    box.fill(str(seed))
    box.press("Enter")
    page.get_by_text("press Generate").first.wait_for(timeout=60_000)
    return time.perf_counter() - t0


def run(clicks: int = 5, n: int = 400) -> list[dict]:
    from playwright.sync_api import sync_playwright

    clicked, reruns = [], []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        proc, url = start_server(Path(tmp) / "cache", n=n)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/generate")
            page.locator(SAMPLE_IMAGES).nth(SAMPLES - 1).wait_for(
                timeout=300_000
            )  # the first visit's result
            for i in range(1, clicks + 1):
                reruns.append(_seed(page, i))
                t0 = time.perf_counter()
                page.get_by_role("button", name="Generate").click()
                page.get_by_text(f"guidance {GUIDANCE:g}, seed {i}).").first.wait_for(
                    timeout=60_000
                )
                page.locator(SAMPLE_IMAGES).nth(SAMPLES - 1).wait_for(timeout=60_000)
                clicked.append(time.perf_counter() - t0)
        finally:
            browser.close()
            proc.terminate()
            proc.wait(30)
    click, rerun = statistics.median(clicked), statistics.median(reruns)
    return [
        {
            "benchmark": f"generate_click_browser[{SAMPLES} samples, {STEPS} {SAMPLER} steps, guidance {GUIDANCE:g}]",
            "click_to_images_seconds": click,
            "clicks": clicked,
            "plain_rerun_seconds": rerun,
            "ratio_to_rerun": click / rerun,
            "limit_seconds": LIMIT_SECONDS,
            "ratio": click / LIMIT_SECONDS,
        }
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.generate_click", description=__doc__.splitlines()[0]
    )
    p.add_argument("--clicks", type=int, default=5)
    args = p.parse_args(argv)
    for row in run(args.clicks):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
