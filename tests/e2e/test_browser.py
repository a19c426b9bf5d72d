"""The real thing: `streamlit run app.py` on a free loopback port, driven by Debian's Chromium
through Playwright. Screenshots go to tests/e2e/screenshots/ (see the README)."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by _requirements, when these tests run
    expect = sync_playwright = None

from benchmarks.density_map import prefill_recording
from benchmarks.load import ARGS as CHROMIUM_ARGS
from benchmarks.load import (
    CHROMIUM,
    MAP,  # the map itself, not a first start's placeholder
)

ROOT = Path(__file__).resolve().parents[2]
# README screenshots: SCREENSHOT_DIR=docs/screenshots python -m pytest tests/e2e
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "tests" / "e2e" / "screenshots"))

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def _requirements() -> None:
    """Hard requirements of these tests: when one is missing they fail, in one line, and never
    skip (first, before a server starts)."""
    if sync_playwright is None:
        pytest.fail(
            "tests/e2e needs Playwright: pip install -r requirements-dev.txt", pytrace=False
        )
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"tests/e2e needs Chromium at {CHROMIUM}: apt-get install chromium", pytrace=False
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cache: Path, wait_until, **env: str) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free loopback port with its cache in `cache` (log in
    cache/server.log), once it answers /_stcore/health."""
    port = free_port()
    env = os.environ | {
        "SPECKLE_VAE_CACHE": str(cache),
        "SPECKLE_VAE_SIM_N": "400",
        "NUMBA_CACHE_DIR": str(ROOT / ".cache" / "numba"),
        **env,
    }
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    with open(cache / "server.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok"
        except OSError:
            return False

    if not wait_until(healthy, 60, interval=0.3):
        proc.kill()
        pytest.fail(
            "streamlit did not answer /_stcore/health: "
            + (cache / "server.log").read_text()[-2000:]
        )
    return proc, url


@pytest.fixture(scope="module")
def server(tmp_path_factory, wait_until):
    cache = tmp_path_factory.mktemp("cache")
    runs = tmp_path_factory.mktemp("runs")
    shutil.copytree(ROOT / "models" / "demo", runs / "demo-copy")  # a second model to compare
    proc, url = launch(cache, wait_until, SPECKLE_VAE_RUNS_ROOT=str(runs))
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    yield pg
    context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    if "SCREENSHOT_DIR" in os.environ:  # README copies: smaller, to keep the repo lean
        from PIL import Image

        with Image.open(path) as im:
            im.convert("RGB").resize((840, 600), Image.Resampling.LANCZOS).save(path, optimize=True)


def wait_app(page) -> None:
    # The app is idle once Streamlit's status widget stops showing "Running".
    page.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000
    )


def test_four_sessions_opening_a_fresh_server_at_once_each_get_the_map(
    browser, tmp_path, wait_until
) -> None:
    """Four people open a just-started server together: every page shows the map, none an
    exception (their first runs import numpy and pandas at the same time, which plotly must
    never see half-imported)."""
    proc, url = launch(tmp_path, wait_until)
    contexts = [browser.new_context(viewport={"width": 1300, "height": 950}) for _ in range(4)]
    try:
        pages = [c.new_page() for c in contexts]
        for pg in pages:
            pg.goto(url, wait_until="commit")
        for pg in pages:
            pg.locator(MAP).first.wait_for(timeout=90_000)
            assert pg.locator('[data-testid="stException"]').count() == 0
        assert "Traceback" not in (tmp_path / "server.log").read_text()
    finally:
        for c in contexts:
            c.close()
        proc.terminate()
        proc.wait(timeout=20)


def test_map_renders_and_box_select_shows_a_sample(server, page) -> None:
    page.goto(server)
    wait_app(page)
    plot = page.locator(MAP).first  # the map, not the placeholder drawn before it
    plot.wait_for(timeout=120_000)
    page.wait_for_selector(f"{MAP} canvas", timeout=60_000)  # WebGL scatter
    shot(page, "atlas")
    assert not page.get_by_text("the map appears here").count()  # the placeholder is gone
    box = page.locator(f"{MAP} .nsewdrag").first.bounding_box()
    assert box and box["width"] > 100
    # Drag a box over the middle of the map (dragmode is "select").
    x0, y0 = box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2
    x1, y1 = box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.8
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()
    heading = page.get_by_text("selected", exact=False).first
    heading.wait_for(timeout=60_000)
    page.get_by_text("reconstruction (z = μ)").first.wait_for(timeout=60_000)
    wait_app(page)
    shot(page, "atlas_selection")


def _decoded_src(page) -> str:
    img = page.locator('[data-testid="stImage"] img').first
    img.wait_for(timeout=60_000)
    return img.get_attribute("src")


def test_dragging_a_traversal_slider_changes_the_image(server, page) -> None:
    page.goto(f"{server}/traverse")
    wait_app(page)
    before = _decoded_src(page)
    first = page.locator('[data-testid="stSlider"]').first
    # The thumb is the positioned parent of the slider's hidden range input.
    thumb = first.locator('input[type="range"]').locator("xpath=../..").bounding_box()
    track = first.locator('[role="group"]').bounding_box()
    y = thumb["y"] + thumb["height"] / 2
    page.mouse.move(thumb["x"] + thumb["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 0.95, y, steps=8)
    page.mouse.up()
    page.wait_for_function(
        "(before) => { const i = document.querySelector('[data-testid=\"stImage\"] img');"
        " return i && i.src !== before; }",
        arg=before,
        timeout=60_000,
    )
    wait_app(page)
    assert _decoded_src(page) != before
    # The slider fragment's elements have no stale fade (views/common.py LIVE_CSS): a rule
    # that the page really loaded, which matches every slider's element container.
    live = page.evaluate(
        """() => {
          const rules = [...document.styleSheets].flatMap(s => { try { return [...s.cssRules]; }
            catch (e) { return []; } }).filter(r => r.selectorText && r.style
            && r.selectorText.includes('.st-key-trav_live') && r.style.transition === 'none');
          const sliders = [...document.querySelectorAll('[data-testid=stSlider]')]
            .map(s => s.closest('[data-testid=stElementContainer]'));
          return [rules.length, sliders.length,
                  sliders.filter(e => rules.some(r => e.matches(r.selectorText))).length];
        }"""
    )
    assert live[0] >= 1 and live[1] >= 8 and live[2] == live[1], live
    shot(page, "traverse")
    # The grid PNG downloads whole, also right after slider moves.
    with page.expect_download(timeout=60_000) as download:
        page.get_by_text("Download grid (PNG)").click()
    data = Path(download.value.path()).read_bytes()
    from PIL import Image

    with Image.open(io.BytesIO(data)) as grid:
        assert grid.format == "PNG"
        assert grid.width >= 7 * 64 and grid.height >= 8 * 64  # 7 steps × 8 dims of 64² px


def test_upload_png_and_16bit_tiff_shows_reconstructions(server, page, tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from speckle.mmf import simulate_mmf

    imgs = simulate_mmf(2, seed=77).images
    png, tif, bad = tmp_path / "frame.png", tmp_path / "frame16.tif", tmp_path / "notes.png"
    Image.fromarray((imgs[0] / imgs[0].max() * 255).astype(np.uint8)).save(png)
    Image.fromarray((imgs[1] / imgs[1].max() * 65535).astype(np.uint16)).save(tif)
    bad.write_text("not an image")
    page.goto(f"{server}/reconstruct")
    wait_app(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(png), str(tif), str(bad)]
    )
    page.get_by_text("Download metrics (CSV)").wait_for(timeout=120_000)
    wait_app(page)
    page.get_by_text("notes.png: not a readable image").first.wait_for(timeout=30_000)
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for(timeout=30_000)
    # Waited for, not counted at once: each finished file upload can restart the page's run, and
    # between a stopped run and the next the status widget is briefly gone, so wait_app can
    # return while the per-image section is still to come (seen once in CI: 0 images).
    page.locator('[data-testid="stImage"] img').nth(2).wait_for(timeout=60_000)
    assert page.locator('[data-testid="stImage"] img').count() >= 3
    assert not page.locator('[data-testid="stException"]').count()
    shot(page, "reconstruct")


def test_upload_camera_stack_gives_one_row_per_frame(server, page, tmp_path) -> None:
    """A 16-bit multi-page TIFF from a camera: every frame is reconstructed and can be picked, and
    the speckle metrics say which lit region they were taken in."""
    import numpy as np
    import tifffile

    from speckle.mmf import simulate_mmf

    imgs = simulate_mmf(5, seed=78).images
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, (imgs / imgs.max() * 65535).astype(np.uint16), photometric="minisblack")
    page.goto(f"{server}/reconstruct")
    wait_app(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(stack)])
    page.get_by_text("Download metrics (CSV)").wait_for(timeout=120_000)
    wait_app(page)
    page.get_by_text("Speckle metrics in the lit region").first.wait_for(timeout=30_000)
    shot(page, "reconstruct_stack")
    page.locator('[data-testid="stSelectbox"]').last.click()  # "Image", the frame picker
    page.get_by_role("option", name="stack.tif#4").wait_for(timeout=30_000)
    page.keyboard.press("Escape")
    assert not page.locator('[data-testid="stException"]').count()


def test_retrain_job_runs_with_progress_and_shows_results(server, page) -> None:
    page.goto(f"{server}/retrain")
    wait_app(page)
    page.get_by_text("random sample").first.click()
    wait_app(page)

    def enter(label: str, value: str) -> None:
        # A rerun can leave the previous run's input on the page for a moment beside the new one
        # (seen once in a full browser run: a strict-mode violation on two β inputs).
        field = page.locator(f'input[aria-label="{label}"]')
        expect(field).to_have_count(1, timeout=30_000)
        field.fill(value)
        field.press("Enter")
        wait_app(page)

    # The smallest job the page allows: 16 images, 10 steps, one β (sweeps: tests/test_jobs.py).
    enter("N random samples", "16")
    enter("Steps", "10")
    enter("β (a list sweeps)", "0.05")
    page.get_by_text("16 images").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Start").click()
    # The progress bar appears while the job runs, then the results.
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=60_000)
    shot(page, "retrain_running")
    page.get_by_role("heading", name="Results").wait_for(timeout=120_000)
    wait_app(page)
    # The trained model was loaded and measured: a point in the rate-distortion plot beside the
    # base model's, and it is the one offered in the results' model picker.
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(timeout=60_000)
    for label in ("β = 0.05", "base (loaded)"):
        expect(plot.locator("text", has_text=label)).to_have_count(1, timeout=30_000)
    picker = page.locator('[data-testid="stMain"]').get_by_role("combobox", name="Model")
    expect(picker).to_have_value("β = 0.05")
    assert not page.locator('[data-testid="stException"]').count()
    shot(page, "retrain")


@pytest.mark.parametrize("name", ["interpolate", "model", "compare"])
def test_other_pages_render(server, page, name: str) -> None:
    page.goto(f"{server}/{name}")
    wait_app(page)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert not page.locator('[data-testid="stException"]').count()
    shot(page, name)


def test_generate_from_a_drawing(server, page) -> None:
    """The first visit generates from a dataset pattern; then a stroke drawn on the canvas
    with the mouse is the pattern the Generate button samples for."""
    samples = page.locator('.st-key-gen_samples [data-testid="stImage"] img')
    page.goto(f"{server}/generate")
    wait_app(page)
    samples.nth(7).wait_for(timeout=180_000)  # the first visit's result, 8 samples
    wait_app(page)
    page.locator('[data-testid="stRadio"]').get_by_text("Draw", exact=True).click()
    # Fabric's upper canvas takes the mouse; it lies over the lower one, in the component's
    # shadow root (Playwright's CSS locators pierce it).
    canvas = page.locator(".st-key-gen_canvas canvas").last
    canvas.wait_for(timeout=60_000)
    wait_app(page)
    box = canvas.bounding_box()
    assert box and box["width"] >= 200
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + 0.35 * w, y + 0.3 * h)  # a "1": a short diagonal, then down
    page.mouse.down()
    page.mouse.move(x + 0.5 * w, y + 0.15 * h, steps=6)
    page.mouse.move(x + 0.5 * w, y + 0.85 * h, steps=12)
    page.mouse.up()
    page.get_by_text("what the generator sees: drawn").wait_for(timeout=60_000)
    wait_app(page)
    button = page.get_by_role("button", name="Generate")
    expect(button).to_be_enabled(timeout=30_000)
    t0 = time.perf_counter()
    button.click()
    page.get_by_text("input pattern (drawn)").wait_for(timeout=120_000)
    print(f"generate click → result: {time.perf_counter() - t0:.1f} s")
    wait_app(page)
    expect(samples).to_have_count(8, timeout=30_000)
    assert not page.locator('[data-testid="stException"]').count()
    shot(page, "generate")


@pytest.fixture(scope="module")
def exported_server(tmp_path_factory, wait_until):
    """A server whose runs root holds an MLP VAE trained and exported by a script outside the
    repository, imported as an "exported" checkpoint (tests/foreign_models.py)."""
    from tests.foreign_models import exported_mlp

    cache = tmp_path_factory.mktemp("cache-exported")
    runs = tmp_path_factory.mktemp("runs-exported")
    exported_mlp(tmp_path_factory.mktemp("elsewhere"), runs / "mlp-exported")
    proc, url = launch(cache, wait_until, SPECKLE_VAE_RUNS_ROOT=str(runs))
    yield url, cache
    proc.terminate()
    proc.wait(timeout=20)


def test_every_page_opens_on_an_exported_model(exported_server, page) -> None:
    """Pick the exported model in the sidebar, then open every page through the navigation (one
    session): each renders with the model's own size and no exception."""
    url, cache = exported_server
    page.goto(url)
    wait_app(page)
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="runs/mlp-exported").click()
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("dz 16", exact=False).first.wait_for(timeout=120_000)
    for name in (
        "Atlas",
        "Traverse",
        "Interpolate",
        "Reconstruct",
        "Generate",
        "Retrain",
        "Compare",
        "Model",
        "Inverse",
    ):
        sidebar.get_by_role("link", name=name).click()
        wait_app(page)
        page.get_by_role("heading", name=name).first.wait_for(timeout=120_000)
        wait_app(page)
        assert not page.locator('[data-testid="stException"]').count(), name
        assert "32² px" in sidebar.inner_text(), name
        if name == "Retrain":
            page.get_by_text("Retraining is not available for this model").wait_for()
    shot(page, "exported_model")
    assert "Traceback" not in (cache / "server.log").read_text()


def test_inverse_reconstructs_a_frame_with_the_shipped_reconstructors(server, page) -> None:
    """The Inverse page reads the first dataset frame with every shipped reconstructor, each
    with its PCC against the true pattern; the round trip generates the reconstruction's
    speckle."""
    page.goto(f"{server}/inverse")
    wait_app(page)
    page.get_by_text("true pattern", exact=True).wait_for(timeout=180_000)
    for method in ("ridge-mu", "ridge-pixels", "dense-pixels", "mlp-mu", "tm"):
        page.get_by_text(re.compile(rf"^{method} · PCC 0\.\d+")).first.wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    wait_app(page)
    page.get_by_role("button", name="Generate its speckle").click()
    page.get_by_text(re.compile(r"^generated from the .* · PCC")).wait_for(timeout=120_000)
    wait_app(page)
    assert not page.locator('[data-testid="stException"]').count()
    shot(page, "inverse")


BIG = 100_000  # frames of the recording drawn as a density map


@pytest.fixture(scope="module")
def big_server(tmp_path_factory, wait_until):
    cache = tmp_path_factory.mktemp("cache-big")
    root = tmp_path_factory.mktemp("data-big")
    prefill_recording(root, cache, BIG)
    # A small default set: the page opens on it before the recording is picked.
    proc, url = launch(
        cache, wait_until, SPECKLE_VAE_SIM_N="40", **{"SPECKLE_VAE_DATA_ROOT": str(root)}
    )
    yield url, cache
    proc.terminate()
    proc.wait(timeout=20)


def test_a_100k_frame_recording_is_a_density_map_with_box_and_click(big_server, page) -> None:
    """Pick a 100k-frame HDF5 recording: the map is a density image; a box drag selects every
    frame inside it (the count is shown), and a click on a drawn point shows that frame."""
    url, cache = big_server
    page.goto(url)
    wait_app(page)
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').nth(1).click()
    page.get_by_role("option", name="rec", exact=True).click()
    page.get_by_text(f"{BIG:,} points: drawn as a density image").wait_for(timeout=120_000)
    wait_app(page)
    page.locator(f"{MAP} svg image").first.wait_for(state="attached", timeout=60_000)
    box = page.locator(f"{MAP} .nsewdrag").first.bounding_box()
    assert box and box["width"] > 100
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
    x1, y1 = box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.7
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()
    heading = page.get_by_text(re.compile(r"^\d+ selected; showing id \d+$")).first
    heading.wait_for(timeout=60_000)
    count = int(heading.inner_text().split()[0])
    assert 1000 < count < BIG  # every frame in the box, far more than the 5,000 drawn
    page.get_by_text("reconstruction (z = μ)").first.wait_for(timeout=60_000)
    wait_app(page)
    shot(page, "atlas_density")
    # Clear, then click one drawn point: that frame alone.
    page.get_by_role("button", name="Clear selection").click()
    page.get_by_text("Nothing selected yet").wait_for(timeout=60_000)
    wait_app(page)
    # Plotly takes a click from the hover that precedes it: move there, pause, then click.
    page.locator(MAP).first.scroll_into_view_if_needed()
    # Streamlit makes a click select a point only outside the box and lasso modes.
    page.locator(f'{MAP} .modebar-btn[data-title="Pan"]').click()
    point = page.locator(f"{MAP} .scatterlayer path.point").nth(100).bounding_box()
    cx, cy = point["x"] + point["width"] / 2, point["y"] + point["height"] / 2
    page.mouse.move(cx, cy, steps=3)
    page.wait_for_timeout(500)
    page.mouse.click(cx, cy)
    single = page.get_by_text(re.compile(r"^1 selected: id \d+$")).first
    single.wait_for(timeout=60_000)
    frame = int(single.inner_text().rsplit(" ", 1)[1])
    page.get_by_text(f"input #{frame}").first.wait_for(timeout=60_000)
    page.get_by_text("reconstruction (z = μ)").first.wait_for(timeout=60_000)
    assert not page.locator('[data-testid="stException"]').count()
    assert "Traceback" not in (cache / "server.log").read_text()


def test_the_modal_pair_works_on_its_simulated_set(server, page) -> None:
    """Pick the shipped modal-fibre VAE and its simulated set in the sidebar, then open Atlas,
    Traverse, Generate and Model through the navigation (one session): the map is drawn, a
    slider decodes, the modal generator samples (with its regressor), and the Model page shows
    the card of the modal VAE with the fibre's temperature among the labels."""
    import json

    from explorer import sources

    config = json.loads((ROOT / sources.MODAL_MODEL / "config.json").read_text())
    page.goto(server)
    wait_app(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    boxes = sidebar.locator('[data-testid="stSelectbox"]')
    boxes.nth(0).click()
    page.get_by_role("option", name=sources.MODAL_MODEL).click()
    wait_app(page)
    boxes.nth(1).click()
    page.get_by_role("option", name=sources.SIMULATED_MODAL).click()
    sidebar.get_by_text(config["weights_sha256"][:12]).wait_for(timeout=180_000)
    sidebar.get_by_text("dataset: 400 images").wait_for(timeout=180_000)
    wait_app(page)

    sidebar.get_by_role("link", name="Atlas").click()
    page.locator(MAP).first.wait_for(timeout=180_000)
    page.wait_for_selector(f"{MAP} canvas", timeout=60_000)
    wait_app(page)
    assert not page.locator('[data-testid="stException"]').count(), "Atlas"

    sidebar.get_by_role("link", name="Traverse").click()
    wait_app(page)
    page.get_by_role("heading", name="Traverse").first.wait_for(timeout=60_000)
    assert _decoded_src(page)  # the decoded frame of the selected sample
    assert page.locator('[data-testid="stSlider"]').count() >= 8
    assert not page.locator('[data-testid="stException"]').count(), "Traverse"

    sidebar.get_by_role("link", name="Generate").click()
    samples = page.locator('.st-key-gen_samples [data-testid="stImage"] img')
    samples.nth(7).wait_for(timeout=180_000)
    wait_app(page)
    page.get_by_text(re.compile(r"^regressor · PCC 0\.\d+")).first.wait_for(timeout=60_000)
    assert not page.get_by_text("No generator was trained").count()
    assert not page.locator('[data-testid="stException"]').count(), "Generate"
    shot(page, "generate_modal")

    sidebar.get_by_role("link", name="Model").click()
    wait_app(page)
    page.get_by_role("heading", name="Model").first.wait_for(timeout=60_000)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    # The probes' table (a canvas grid, its cells in the DOM but hidden) has the fibre's factor.
    page.get_by_text("temperature", exact=True).first.wait_for(state="attached", timeout=120_000)
    wait_app(page)
    assert not page.locator('[data-testid="stException"]').count(), "Model"
