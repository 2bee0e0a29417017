"""Regenerate the studio's screenshots in docs/studio/ (dream, video, explore, sound) with a real photo.

    python benchmarks/screenshots.py [--photo FILE] [--library DIR] [--out docs/studio]

A studio with the default settings is served on a free 127.0.0.1 port from a fresh library (default
/tmp/deepdream-studio, so the page shows a plain path; it must not exist yet and is removed afterwards),
and Debian's Chromium (headless, driven by PyPI playwright) does what a user would: dream a cat photo
from /work/shared/data/cats-vs-dogs/test (seed 7), start a short zoom loop from it, sweep its recommended
layers, and dream a synthetic chirp in the Sound tab. Each tab is saved as a PNG once its result shows.
Minutes on a CPU; anything missing (photo, Chromium, playwright) ends it with one line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = Path("/work/shared/data/cats-vs-dogs/test")
PHOTO = "cats/cat.4372.jpg"  # a tabby on a sofa: the docs' benchmark photo too
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 1000}
JOB_S = 900  # the longest wait for one tab's result (the default dream of a 500 px photo on a busy CPU)


def fail(message: str) -> None:
    sys.exit(f"screenshots: {message}")


def pick_photo(path: str | None) -> Path:
    photo = Path(path) if path else PHOTOS / PHOTO
    if not photo.is_file() and path is None and PHOTOS.is_dir():  # another copy of the data set
        photo = next(iter(sorted(PHOTOS.rglob("*.jpg"))), photo)
    if not photo.is_file():
        fail(f"no photo at {photo} (give one with --photo)")
    return photo


def write_chirp(path: Path, seconds: float = 2.0, rate: int = 16000) -> Path:
    """A rising chirp over a steady tone, 16-bit mono: something with structure to dream."""
    t = np.arange(round(seconds * rate)) / rate
    x = 0.25 * np.sin(2 * np.pi * (220 * t + 600 * t**2)) + 0.1 * np.sin(2 * np.pi * 440 * t)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


def wait_status(page, where: str, *words: str, timeout: float = JOB_S) -> str:
    end = time.monotonic() + timeout
    text = ""
    while time.monotonic() < end:
        text = page.locator(f"{where} .status-text").inner_text()
        if any(w in text for w in words):
            return text
        time.sleep(0.2)
    fail(f"{where} never showed {words}: {text!r}")


def shoot(page, path: Path, settle_ms: int) -> None:
    """The top of the page (a click may have scrolled it), once images and players have settled."""
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(settle_ms)
    page.screenshot(path=path)


def dream_tab(page, photo: Path, out: Path) -> None:
    page.locator("#photo input[type=file]").set_input_files(str(photo))
    wait_status(page, "#status", "ready", timeout=60)
    page.fill("#seed input", "7")
    page.check("text=Lock seed")
    page.click("#dream")
    if "saved" not in wait_status(page, "#status", "saved", "error"):
        fail(f"the dream failed: {page.locator('#status').inner_text()}")
    shoot(page, out / "dream.png", 500)


def video_tab(page, photo: Path, out: Path) -> None:
    page.get_by_role("tab", name="Video and zoom").click()
    page.locator("#video-source input[type=file]").set_input_files(str(photo))
    field = page.locator("#zoom-frames input[type=number]")
    field.fill("3")
    field.press("Enter")
    page.click("#video-go")
    page.wait_for_function(
        "document.querySelector('#video-jobs') && document.querySelector('#video-jobs').innerText.includes('done')",
        timeout=JOB_S * 1000,
    )
    page.wait_for_selector("#video-player video", timeout=60_000)
    shoot(page, out / "video.png", 1000)


def explore_tab(page, out: Path) -> None:
    page.get_by_role("tab", name="Explore").click()
    page.get_by_label("layer sweep").check()
    page.click("#explore-go")
    if "saved" not in wait_status(page, "#explore-status", "saved", "error"):
        fail(f"the sweep failed: {page.locator('#explore-status').inner_text()}")
    page.wait_for_selector("#sheet img")
    shoot(page, out / "explore.png", 500)


def sound_tab(page, sound: Path, out: Path) -> None:
    page.get_by_role("tab", name="Sound").click()
    page.locator("#sound-in input[type=file]").set_input_files(str(sound))
    page.wait_for_selector("#sound-in audio, #sound-in .waveform-container, #sound-in button", timeout=60_000)
    page.click("#sound-go")
    if "saved" not in wait_status(page, "#sound-status", "saved", "error"):
        fail(f"the sound failed: {page.locator('#sound-status').inner_text()}")
    page.wait_for_selector("#sound-figure img")
    shoot(page, out / "sound.png", 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", help=f"the photo to dream (default {PHOTOS / PHOTO})")
    parser.add_argument("--library", default="/tmp/deepdream-studio", help="a library folder that does not exist yet")
    parser.add_argument("--out", default=str(ROOT / "docs" / "studio"), help="where the PNGs go")
    args = parser.parse_args()

    photo = pick_photo(args.photo)
    library_dir = Path(args.library)
    if library_dir.exists():
        fail(f"{library_dir} exists: the shots need a fresh library (remove it or give another --library)")
    if not Path(CHROMIUM).exists():
        fail(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        fail("playwright is not installed (pip install playwright; Debian's Chromium is used, no playwright install)")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from deepdream.settings import Settings
    from deepdream.studio.app import launch
    from deepdream.studio.library import Library
    from deepdream.studio.service import Studio

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scratch = tempfile.mkdtemp(prefix="screenshots-")
    try:
        studio = Studio(Library(library_dir), runs=None, defaults=Settings())
        sound = write_chirp(Path(scratch) / "chirp.wav")
        app, url = launch(studio, port=port)
        began = time.monotonic()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
                page = browser.new_context(viewport=VIEWPORT).new_page()
                page.set_default_timeout(60_000)
                page.goto(url)
                page.wait_for_selector("#dream")
                dream_tab(page, photo, out)
                video_tab(page, photo, out)
                explore_tab(page, out)
                sound_tab(page, sound, out)
                browser.close()
        finally:
            app.close()
    finally:
        shutil.rmtree(library_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"wrote {', '.join(sorted(p.name for p in out.glob('*.png')))} in {out} "
        f"({time.monotonic() - began:.0f} s; photo {photo.name})"
    )


if __name__ == "__main__":
    main()
