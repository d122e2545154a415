"""The studio in a real browser: headless Chromium (driven by Python playwright) loads the page, uploads
a shared image, runs Compare and waits for both result images and the heatmap plot.

Screenshots go to the test's tmp dir; with SDPOSE_SHOTS_DIR=/tmp/shots every tab is also saved there
(to look at the page). Skips only when playwright or a Chromium cannot be found.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
playwright_sync = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
pytest.importorskip("gradio")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
TABS = ("Compare", "Webcam & video", "Samples & failure analysis", "Review", "Model")


def _chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                      shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no Chromium found (/usr/bin/chromium, chromium-browser, google-chrome on PATH, or $CHROMIUM)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    from app.context import AppContext
    from app.ui import build_demo, launch

    demo = build_demo(AppContext())
    port = _free_port()
    launch(demo.queue(), server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def playwright_chromium():
    """(playwright, Chromium path): one sync playwright per module (a second one in the same thread fails)."""
    executable = _chromium()
    with playwright_sync.sync_playwright() as pw:
        yield pw, executable


@pytest.fixture(scope="module")
def page(app_url, playwright_chromium):
    pw, executable = playwright_chromium
    browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(app_url, wait_until="load", timeout=60_000)
    page.locator("#compare-run").wait_for(state="visible", timeout=60_000)
    yield page
    browser.close()


def _image_source(page, selector: str) -> str:
    element = page.locator(selector)
    return element.first.get_attribute("src") or "" if element.count() else ""


def _shot(page, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def test_compare_in_a_browser_shows_both_drawings_and_the_heatmaps(page, shared_data: Path, tmp_path: Path) -> None:
    image = shared_data / "coco" / "mmpose_coco" / "images" / "000000196141.jpg"
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-input input[type=file]").set_input_files(str(image))
    page.locator("#compare-input img").first.wait_for(state="visible", timeout=30_000)
    page.locator("#compare-run").click()
    for element in ("#compare-single img", "#compare-final img"):
        page.locator(element).first.wait_for(state="visible", timeout=120_000)
    page.locator("#compare-heatmaps .js-plotly-plot").first.wait_for(state="visible", timeout=60_000)
    page.locator("#compare-overlay .js-plotly-plot").first.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(500)  # let plotly finish drawing before the screenshot
    _shot(page, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    for element in ("#compare-single img", "#compare-final img"):
        natural_width = page.locator(element).first.evaluate("img => img.naturalWidth")
        assert natural_width > 100, f"{element} did not load a real image"
    # the heatmap figure has one subplot per cycle (3 by default)
    assert page.locator("#compare-heatmaps .js-plotly-plot .cartesianlayer .subplot").count() >= 3
    shots = os.environ.get("SDPOSE_SHOTS_DIR")
    if shots:
        _shot(page, Path(shots) / "tab_compare.png")


def test_a_packaged_example_runs_without_shared_data(page) -> None:
    """The first example ships inside scikit-image (the astronaut, public domain): pick it, compare."""
    from app.compare import example_images

    if not example_images() or "skimage" not in example_images()[0]:
        pytest.skip("scikit-image (which ships the example photos) is not installed")
    page.get_by_role("tab", name="Compare").click()
    before = _image_source(page, "#compare-single img")
    page.locator("#compare-examples .gallery-item").first.click()
    page.wait_for_function("() => ((document.querySelector('#compare-input img') || {}).src || '').includes('astronaut')",
                           timeout=30_000)
    page.locator("#compare-run").click()
    page.wait_for_function(
        "old => { const img = document.querySelector('#compare-single img'); return img && img.src && img.src !== old; }",
        arg=before, timeout=120_000)
    page.locator("#compare-heatmaps .js-plotly-plot").first.wait_for(state="visible", timeout=60_000)
    assert page.locator("#compare-single img").first.evaluate("img => img.naturalWidth") == 512


def test_webcam_streams_skeleton_frames_in_a_browser(app_url, playwright_chromium) -> None:
    """Chromium's fake camera (a synthetic moving pattern) streams into the Webcam tab; the callback must
    answer with drawn frames and timings. Nobody is in the pattern, so it reports 0 people."""
    pw, executable = playwright_chromium
    flags = CHROMIUM_FLAGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    browser = pw.chromium.launch(executable_path=executable, headless=True, args=flags)
    try:
        page = browser.new_context(permissions=["camera"], viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(app_url, wait_until="load", timeout=60_000)
        page.get_by_role("tab", name="Webcam & video").click()
        page.get_by_text("Click to Access Webcam").click()
        page.locator("button:visible", has_text="Record").first.click(timeout=60_000)
        page.get_by_text("people ·").first.wait_for(timeout=120_000)  # the stats line of a processed frame
        stats = page.get_by_text("people ·").first.inner_text()
        assert "0 people" in stats and "cycle(s)" in stats
        drawn = page.locator("#webcam-output img").first
        drawn.wait_for(state="visible", timeout=30_000)
        assert drawn.evaluate("img => img.naturalWidth") == 480  # the fake camera's 640x480, shrunk to 480
    finally:
        browser.close()


def test_every_tab_renders(page, tmp_path: Path) -> None:
    shots = Path(os.environ["SDPOSE_SHOTS_DIR"]) if os.environ.get("SDPOSE_SHOTS_DIR") else tmp_path
    for name in TABS:
        tab = page.get_by_role("tab", name=name)
        tab.click()
        page.wait_for_timeout(1500)
        assert tab.get_attribute("aria-selected") == "true", f"tab {name} did not open"
        assert "This tab is missing" not in page.inner_text("body"), f"tab {name} could not be built"
        _shot(page, shots / f"tab_{name.split()[0].lower()}.png")
