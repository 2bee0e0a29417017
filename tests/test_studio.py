"""The studio served for real on a free loopback port: API tests through gradio_client, and end-to-end
tests in Debian's Chromium driven by Playwright (skipped, with the reason, where either is missing)."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import served, synthetic_photo
from deepdream.audio import probe as audio_probe
from deepdream.audio import read_metadata as audio_metadata
from deepdream.audio.io import read_all as audio_read_all
from deepdream.imagefiles import read_metadata
from deepdream.settings import Settings

pytest.importorskip("gradio", reason="the studio extra is not installed (pip install -e '.[studio]')")
from gradio_client import Client, handle_file  # noqa: E402

from deepdream.studio.app import SESSIONS  # noqa: E402
from deepdream.studio.library import Library  # noqa: E402
from deepdream.studio.service import Studio  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# tiny dreams: one octave of two steps on a 64 x 48 photo takes a fraction of a second
FAST = Settings(octaves=1, iterations=2, jitter=4, size=(48, 48))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("library")
    studio = Studio(Library(folder), runs=None, defaults=FAST)
    with served(studio) as (app, url):
        yield studio, url, app


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    out = {"photo": d / "photo.png", "big": d / "big.png", "text": d / "notes.png", "mask": d / "mask.png"}
    synthetic_photo(64, 48).save(out["photo"])
    synthetic_photo(320, 240, seed=3).save(out["big"])
    out["text"].write_text("this is not a picture")
    mask = np.zeros((48, 64), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(out["mask"])
    out["sound"] = write_wav(d / "tone.wav", seconds=1.0)
    return out


def write_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A chirp over two tones and a little noise, 16-bit mono."""
    t = np.arange(round(seconds * rate)) / rate
    x = 0.2 * np.sin(2 * np.pi * (200 * t + 900 * t**2)) + 0.1 * np.sin(2 * np.pi * 440 * t)
    x = x + 0.1 * np.sin(2 * np.pi * 1000 * t) + 0.02 * np.random.default_rng(0).standard_normal(t.size)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return Client(server[1], verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def results(studio: Studio) -> set[str]:
    return {p.name for p in studio.library.sub("results").iterdir()}


# ---------------------------------------------------------------- API (gradio_client)


def test_api_dream_saves_a_png_with_its_settings(server, client, files):
    studio = server[0]
    before = results(studio)
    path, text = client.predict(handle_file(str(files["photo"])), json.dumps({"seed": 11}), None, api_name="/dream")
    settings = json.loads(text)
    assert settings["seed"] == 11 and settings["octaves"] == 1 and settings["iterations"] == 2
    new = results(studio) - before
    assert len(new) == 1
    saved = studio.library.sub("results") / new.pop()
    assert read_metadata(saved)["seed"] == 11
    out, photo = np.asarray(Image.open(path).convert("RGB")), np.asarray(Image.open(files["photo"]))
    assert out.shape == photo.shape and np.abs(out.astype(int) - photo).mean() > 1


def test_api_mask_keeps_black_pixels(client, files):
    path, _ = client.predict(handle_file(str(files["photo"])), "{}", handle_file(str(files["mask"])), api_name="/dream")
    out, photo = np.asarray(Image.open(path).convert("RGB")), np.asarray(Image.open(files["photo"]))
    assert np.array_equal(out[:, :32], photo[:, :32])
    assert np.abs(out[:, 32:].astype(int) - photo[:, 32:]).mean() > 1


def test_api_refuses_a_file_that_is_not_an_image(client, files):
    with pytest.raises(Exception, match="not an image"):
        client.predict(handle_file(str(files["text"])), "{}", None, api_name="/dream")


def test_api_bad_settings_get_one_line(client, files):
    with pytest.raises(Exception, match="octaves must be >= 1"):
        client.predict(handle_file(str(files["photo"])), '{"octaves": 0}', None, api_name="/dream")


def test_api_cannot_make_the_studio_read_other_files(client, files):
    for field in ("guide", "weights", "checkpoint"):
        with pytest.raises(Exception, match=f"the {field} file passwd is not in the studio library"):
            client.predict(
                handle_file(str(files["photo"])), json.dumps({field: "/etc/passwd"}), None, api_name="/dream"
            )


def test_api_sound_dreams_a_file_into_the_library(server, client, files):
    studio = server[0]
    out, figure, status = client.predict(
        handle_file(str(files["sound"])), json.dumps({"seed": 5}), json.dumps({"survival_steps": 2}), api_name="/sound"
    )
    assert status == "done"
    saved = {p.suffix for p in studio.library.sub("sounds").iterdir() if not p.name.startswith(".")}
    assert saved == {".flac", ".png"}
    with wave.open(str(files["sound"])) as w:
        source = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768
    info = audio_probe(out)
    dreamed = audio_read_all(info)
    assert (info.sample_rate, info.channels, dreamed.shape[1]) == (8000, 1, source.size)
    assert np.abs(dreamed[0] - source).mean() > 1e-3  # the dream changed the sound
    assert audio_metadata(out)["deepdream"]["seed"] == 5 and audio_metadata(out)["audio"]["survival_steps"] == 2
    assert Image.open(figure).size[0] > 100


def test_api_sound_refuses_a_file_that_is_not_a_sound(server, client, files):
    with pytest.raises(Exception, match=r"error: notes\.png (has no audio stream|is not a sound or video file)"):
        client.predict(handle_file(str(files["text"])), "{}", "{}", api_name="/sound")
    with pytest.raises(Exception, match="unknown phase"):
        client.predict(handle_file(str(files["sound"])), "{}", '{"phase": "random"}', api_name="/sound")


def test_cancelled_sound_job_leaves_no_file(server, tmp_path):
    studio = server[0]
    before = set(studio.library.sub("sounds").iterdir())
    source = studio.library.sub("uploads") / "long.wav"
    write_wav(source, seconds=4.0)
    job = studio.sound(FAST.replace(iterations=200), source, owner="cancel-test")
    while job.done < 3 and not job.finished.is_set():
        time.sleep(0.05)
    studio.jobs.cancel(owner="cancel-test", kind="sound")
    assert job.finished.wait(60) and job.cancelled and job.result is None
    assert set(studio.library.sub("sounds").iterdir()) == before  # no partial output, no scratch file


def test_page_sessions_kept_are_bounded(server):
    """Every browser tab or API client is a Gradio session holding a copy of the page's config: the oldest
    are dropped beyond SESSIONS, so visits cannot grow the server without bound."""
    holder = server[2].state_holder
    for i in range(SESSIONS + 10):
        holder[f"visit-{i}"]  # what a request of a new session does first
    assert len(holder.session_data) == SESSIONS and "visit-0" not in holder and f"visit-{SESSIONS + 9}" in holder


def test_the_gradio_cache_is_swept_and_the_library_kept(tmp_path):
    """Gradio keeps every upload and every picture the page shows in the library's cache/: old ones are swept
    (here every second, of files older than 2 s), so a long-running studio's disk does not grow for ever."""
    studio = Studio(Library(tmp_path / "library"), runs=None, defaults=FAST)
    photo = tmp_path / "photo.png"
    synthetic_photo(64, 48).save(photo)
    cache = studio.library.sub("cache")
    with served(studio, cache_sweep=(1, 2)) as (_, url):
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        client.predict(handle_file(str(photo)), "{}", None, api_name="/dream")
        cached = [p for p in cache.glob("*/*") if p.is_file()]  # cache/<hash>/<name>; not Gradio's empty tmp stubs
        assert len(cached) == 2, "the upload and the result should be in Gradio's cache"
        deadline = time.monotonic() + 20
        while any(p.exists() for p in cached) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(p.exists() for p in cached)
        assert len(results(studio)) == 1  # the dream itself stays in the library


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_only_the_library_is_served(server, tmp_path):
    studio, url, _ = server
    outside = tmp_path / "secret.png"
    synthetic_photo(32, 32).save(outside)
    inside = studio.library.sub("results") / "served.png"
    synthetic_photo(32, 32).save(inside)
    assert status_of(f"{url}/gradio_api/file={inside}") == 200
    for path in (outside, Path("/etc/passwd"), studio.library.sub("results") / ".." / ".." / outside.name):
        assert status_of(f"{url}/gradio_api/file={path}") in (403, 404)
    record = studio.library.sub("jobs") / "x.json"
    record.write_text("{}")
    log = studio.library.sub("logs") / "studio.log"
    log.write_text("a traceback with this machine's paths")
    for hidden in (record, log):  # job records and the log: in the library, not served
        assert status_of(f"{url}/gradio_api/file={hidden}") in (403, 404)
    inside.unlink()
    record.unlink()
    log.unlink()


# ---------------------------------------------------------------- browser (Playwright + Debian Chromium)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(server[1])
    page.wait_for_selector("#dream")
    yield page
    context.close()


def status_text(page, where: str = "#status") -> str:
    return page.locator(f"{where} .status-text").inner_text()


def wait_status(page, *words: str, timeout: float = 60, where: str = "#status") -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = status_text(page, where)
        if any(w in text for w in words):
            return text
        time.sleep(0.1)
    raise AssertionError(f"status never showed {words}: {status_text(page, where)!r}")


def upload(page, path: Path) -> None:
    page.locator("#photo input[type=file]").set_input_files(str(path))
    wait_status(page, "ready", "error")


def result_pixels(page, server) -> np.ndarray:
    src = page.locator("#result img").get_attribute("src")
    with urllib.request.urlopen(src if src.startswith("http") else server[1] + src, timeout=30) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def test_e2e_upload_and_dream(page, server, files):
    upload(page, files["photo"])
    page.click("#dream")
    wait_status(page, "saved", "error")
    assert "saved" in status_text(page)
    out, photo = result_pixels(page, server), np.asarray(Image.open(files["photo"]))
    assert out.shape == photo.shape and np.abs(out.astype(int) - photo).mean() > 1


def test_e2e_gallery_restores_and_downloads_with_settings(page, server, files, tmp_path):
    upload(page, files["photo"])
    page.fill("#seed input", "4242")
    page.check("text=Lock seed")
    page.click("#dream")
    wait_status(page, "saved")
    newest = page.locator("#gallery button.thumbnail-item").first
    newest.wait_for()
    page.fill("#seed input", "1")
    newest.click()
    wait_status(page, "restored")
    assert page.locator("#seed input").input_value() == "4242"  # the picture's settings are back
    with page.expect_download() as download:
        page.click("#download")
    target = tmp_path / "download.png"
    download.value.save_as(target)
    settings = read_metadata(target)
    assert settings["seed"] == 4242 and settings["iterations"] == 2


def test_e2e_cancel_mid_dream(page, server, files):
    studio = server[0]
    upload(page, files["big"])
    page.click("text=Algorithm")
    page.fill("#iterations input[type=number]", "100")
    page.press("#iterations input[type=number]", "Enter")
    before = results(studio)
    page.click("#dream")
    wait_status(page, "steps")  # running: the bar and the step count are up
    page.click("#cancel")
    wait_status(page, "cancelled", timeout=10)
    time.sleep(0.5)
    assert results(studio) == before  # no partial file, not even a temporary one


def paint(page, x0: float, x1: float) -> None:
    """Brush strokes over the editor's picture between fractions x0..x1 of its width."""
    canvas = page.locator("#mask canvas").first
    box = canvas.bounding_box()
    for y in np.linspace(0.1, 0.9, 4):  # few events: every one is a canvas redraw in a software renderer
        page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * x1, box["y"] + box["height"] * y, steps=2)
        page.mouse.up()


def test_e2e_painted_mask_keeps_unmasked_pixels(page, server, files):
    upload(page, files["photo"])
    page.wait_for_selector("#mask canvas")
    paint(page, 0.75, 0.98)
    page.click("#dream")
    wait_status(page, "saved", "error")
    out, photo = result_pixels(page, server), np.asarray(Image.open(files["photo"]))
    assert np.array_equal(out[:, :24], photo[:, :24])  # left of the strokes: the photo, exactly
    assert np.abs(out[:, 52:].astype(int) - photo[:, 52:]).max() > 8  # under the strokes: dreamed


def test_e2e_non_image_upload_shows_an_error(page, files):
    upload(page, files["text"])
    assert "not an image" in status_text(page)


def set_number(page, selector: str, value: str) -> None:
    field = page.locator(f"{selector} input[type=number]")
    field.fill(value)
    field.press("Enter")


def test_e2e_zoom_job_survives_a_reload(page, server):
    """A zoom loop from noise runs as a background job; after a page reload the table still has it and
    the finished video is in the player."""
    page.get_by_role("tab", name="Video and zoom").click()
    set_number(page, "#zoom-frames", "2")
    page.click("#video-go")
    page.wait_for_selector("#video-jobs")
    page.reload()
    page.wait_for_selector("#dream")
    page.get_by_role("tab", name="Video and zoom").click()
    page.wait_for_function(
        "document.querySelector('#video-jobs') && document.querySelector('#video-jobs').innerText.includes('done')",
        timeout=120_000,
    )
    page.wait_for_selector("#video-player video")
    page.wait_for_timeout(500)
    done = [json.loads(p.read_text()) for p in server[0].library.sub("jobs").glob("zoom-*.json")]
    assert [r["state"] for r in done] == ["done"]
    assert Path(done[0]["output"]).stat().st_size > 0


def test_e2e_channel_atlas(page, server):
    page.get_by_role("tab", name="Explore").click()
    page.get_by_label("channel atlas").check()
    set_number(page, "#atlas-tile", "32")
    page.fill("#atlas-channels textarea", "0-3")
    page.click("#explore-go")
    wait_status(page, "saved", "error", where="#explore-status", timeout=120)
    assert "saved" in status_text(page, "#explore-status")
    page.wait_for_selector("#sheet img")


def test_e2e_sound_tab_dreams_a_sound(page, server, files):
    page.get_by_role("tab", name="Sound").click()
    page.locator("#sound-in input[type=file]").set_input_files(str(files["sound"]))
    page.wait_for_selector("#sound-in audio, #sound-in .waveform-container, #sound-in button", timeout=30_000)
    page.click("#sound-go")
    wait_status(page, "saved", "error", where="#sound-status", timeout=120)
    assert "saved" in status_text(page, "#sound-status")
    page.wait_for_selector("#sound-figure img")
    href = page.locator("#sound-out a[href*='.flac']").first.get_attribute("href")  # the player's download link
    with urllib.request.urlopen(href if href.startswith("http") else server[1] + href, timeout=30) as response:
        assert response.read(4) == b"fLaC"  # the saved FLAC, served to the page
