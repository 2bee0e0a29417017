"""The studio's Live tab in Debian's Chromium, driven by Playwright, with a fake camera fed from a y4m clip the
test writes: the frames that come back are dreamed, a still scene holds still, the frame rate on the page is
the one the browser sees, a snapshot lands in the library, a second page finds the device busy, and a
browser that refuses the camera is told so on the page. Skipped, with the reason, without Chromium or
Playwright."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import served
from deepdream import imagefiles
from deepdream.engine.objectives import build_objective
from deepdream.engine.taps import Taps
from deepdream.imagefiles import read_metadata
from deepdream.settings import Settings

pytest.importorskip("gradio", reason="the studio extra is not installed (pip install -e '.[studio]')")
from deepdream.studio.library import Library  # noqa: E402
from deepdream.studio.service import Studio  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FAST = Settings(octaves=1, iterations=4, jitter=4)
W, H = 160, 120


def camera_frame() -> tuple[bytes, np.ndarray]:
    """One still scene as a y4m frame (I420) and as the RGB picture it decodes to."""
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([xx * 255 // W, yy * 255 // H, 128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)], -1)
    rgb = rgb.astype(np.uint8)
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    return i420.tobytes(), cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("camera") / "clip.y4m"
    frame, rgb = camera_frame()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(10):
            f.write(b"FRAME\n" + frame)
    return path, rgb


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("library")
    studio = Studio(Library(folder), runs=None, defaults=FAST)
    with served(studio) as (_, url):
        yield studio, url


@pytest.fixture(scope="module")
def playwright():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        yield p


def open_live_tab(browser, url: str):
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("tab", name="Live").click()
    page.locator('#live-camera [title="grant webcam access"] button').click()
    return page


def start(page) -> None:
    page.locator("#live-camera button.capture-button").click()


def wait_text(locator, text: str, seconds: float = 30) -> None:
    """Wait until the element's text holds `text`. Polled as text: while a stream event is pending, Gradio lays
    its timer over the status, and Playwright's visibility wait missed lines that were there all along."""
    deadline = time.monotonic() + seconds
    while text not in locator.inner_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert text in locator.inner_text()


def pixels(src: str) -> np.ndarray:
    """The picture of a data URL."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


def energy(backbone, layers, frame: np.ndarray) -> float:
    with Taps(backbone.model, layers) as taps, torch.no_grad():
        acts = taps(backbone.normalize(imagefiles.from_uint8(frame)))
        return float(sum(a.pow(2).mean() for a in acts.values()))


def test_live_tab_dreams_the_camera_steadily_at_the_rate_it_shows(playwright, server, clip):
    studio, url = server
    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-video-capture={clip[0]}"]  # fmt: skip
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", *flags])
    try:
        page = open_live_tab(browser, url)
        start(page)
        # the browser's own count of new dreamed frames, by when each appeared (seconds, the page's clock):
        # recorded in the page, so a slow test process polling through Playwright misses none
        page.evaluate(
            """() => { window.arrivals = []; const out = document.querySelector('#live-out');
            const seen = () => { const img = out.querySelector('img'); const n = window.arrivals.length;
              if (img && img.src && (!n || window.arrivals[n - 1][1] !== img.src))
                window.arrivals.push([performance.now() / 1000, img.src]); };
            new MutationObserver(seen).observe(out, {subtree: true, childList: true, attributes: true}); }"""
        )
        end = time.monotonic() + 90
        count = "() => window.arrivals.length >= 12 && window.arrivals.at(-1)[0] - window.arrivals[0][0] >= 4"
        while time.monotonic() < end and not page.evaluate(count):
            time.sleep(0.2)
        arrivals, now = page.evaluate("() => [window.arrivals, performance.now() / 1000]")
        assert len(arrivals) >= 12, f"only {len(arrivals)} dreamed frames came back"
        # JPEG inline: no file in Gradio's cache per frame, and no fetch; PNG cost 15 ms a frame to write
        assert arrivals[-1][1].startswith("data:image/jpeg;base64,")
        assert not [p for p in studio.library.sub("cache").glob("*/*") if p.suffix in (".jpeg", ".png", ".webp")]
        shown = float(page.locator("#live-meter .live-meter").get_attribute("data-fps"))
        delay = float(page.locator("#live-meter .live-meter").get_attribute("data-delay"))
        assert 0 < delay < 5
        recent = [t for t, _ in arrivals if t > now - 3.0]
        measured = (len(recent) - 1) / (recent[-1] - recent[0])
        assert shown == pytest.approx(measured, rel=0.4, abs=1.0), (shown, measured)

        # dreamed: more activation at the dream layer than the camera's frame; steady: consecutive frames of
        # the still scene differ far less than a dream differs from the camera
        a, b = pixels(arrivals[-2][1]), pixels(arrivals[-1][1])
        backbone = studio.backbones.get(FAST)
        layers = build_objective(backbone, FAST, None).layers
        camera = clip[1]
        assert energy(backbone, layers, b) > 1.3 * energy(backbone, layers, camera)
        change = np.abs(b.astype(float) - a).mean()
        dreamed = np.abs(b.astype(float) - camera).mean()
        assert change < 0.35 * dreamed, (change, dreamed)

        # a second page on the same device is told it is busy while this one streams
        other = open_live_tab(browser, url)
        start(other)
        wait_text(other.locator("#live-status"), "busy")

        # the snapshot is saved to the library with its settings
        page.click("#live-snapshot")
        # the library, not the status line: the next streamed frame writes "live" over "saved"
        deadline, saved = time.monotonic() + 30, []
        while not saved and time.monotonic() < deadline:
            time.sleep(0.2)
            saved = [p for p in studio.library.gallery() if "-live" in p.name]
        assert saved and read_metadata(saved[0])["iterations"] == FAST.iterations
    finally:
        browser.close()


def test_a_browser_that_refuses_the_camera_is_told_so(playwright, server):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--use-fake-device-for-media-stream",
                                               "--deny-permission-prompts"])  # fmt: skip
    try:
        page = open_live_tab(browser, server[1])
        page.locator("#live-meter .live-camera", has_text="the browser refused the camera").wait_for(timeout=30_000)
    finally:
        browser.close()
