"""The studio's parts without a server: uploads and hosts refused with clear messages, the job line
(places, cancel, previews), the library folder, settings <-> controls, video jobs resumed after a
restart, and Gradio kept out of `import deepdream` and the other commands."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import synthetic_photo
from deepdream.errors import ImageError, OutputError, SettingsError
from deepdream.explore import sweep_layers
from deepdream.settings import Settings, preset
from deepdream.studio import form
from deepdream.studio.jobs import Job, Jobs, follow
from deepdream.studio.library import Library
from deepdream.studio.safety import check_host, check_image, check_port, parse_auth
from deepdream.studio.service import Studio, mask_from_layers

# ---------------------------------------------------------------- uploads and hosts


def test_uploads_that_are_not_usable_pictures(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageError, match="notes.png is not an image"):
        check_image(text)
    huge = tmp_path / "huge.png"  # 110 MP of one bit: 1.4 MB in memory, a few kB on disk
    Image.new("1", (11000, 10000)).save(huge)
    with pytest.raises(ImageError, match="takes up to 100 MP|too large to open safely"):
        check_image(huge)
    bomb = tmp_path / "bomb.png"  # the header claims 225 MP: refused before decoding
    Image.new("1", (15000, 15000)).save(bomb)
    with pytest.raises(ImageError, match="huge.png|bomb.png"):
        check_image(bomb)
    truncated = tmp_path / "cut.png"
    synthetic_photo(64, 48).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ImageError, match="cut.png"):
        check_image(truncated)
    assert str(tmp_path) not in str(pytest.raises(ImageError, check_image, text).value)  # names only, no paths


def test_host_needs_auth_or_insecure():
    assert check_host("127.0.0.1", None, False) is None
    with pytest.raises(SettingsError, match="--auth USER:PASS"):
        check_host("0.0.0.0", None, False)
    assert "password protected" in check_host("0.0.0.0", ("me", "pw"), False)
    assert "NO password" in check_host("0.0.0.0", None, True)
    assert parse_auth("me:s3cr:et") == ("me", "s3cr:et")
    with pytest.raises(SettingsError):
        parse_auth("nopassword")


def test_cli_refuses_an_open_host_without_auth_and_never_imports_gradio_elsewhere():
    """One subprocess: `deepdream studio --host 0.0.0.0` fails in one line before Gradio is imported,
    and neither `import deepdream` nor building every other command imported it."""
    code = (
        "import sys, deepdream.cli as c; c.build_parser(); code = c.main(['studio', '--host', '0.0.0.0']); "
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'gradio_client')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.strip() == "1 []", r.stderr
    assert r.stderr.count("\n") == 1 and "--auth USER:PASS" in r.stderr


# ---------------------------------------------------------------- jobs


def spin(steps: int, pause: float = 0.01):
    def work(job):
        job.total = steps
        for _ in range(steps):
            time.sleep(pause)
            job.update()
        return "finished"

    return work


def test_jobs_wait_in_line_per_device_and_cancel_fast():
    jobs = Jobs()
    first = jobs.submit("dream", "cpu", spin(1000), owner="a")
    second = jobs.submit("dream", "cpu", spin(3), owner="b")
    other = jobs.submit("dream", "cuda:0", spin(3), owner="c")
    while first.done == 0:
        time.sleep(0.01)
    assert first.place == 0 and second.place == 1 and "1 job ahead" in second.status()
    assert other.finished.wait(10) and other.result == "finished"  # another device does not wait
    began = time.monotonic()
    assert jobs.cancel(owner="a") == 1
    assert first.finished.wait(5)
    stopped = time.monotonic() - began
    assert first.cancelled and first.result is None
    assert second.finished.wait(10) and second.result == "finished" and second.place is None
    print(f"cancel took {stopped:.3f} s")


def test_a_failing_job_reports_one_line():
    def fail(job):
        raise SettingsError("octaves must be >= 1, got 0")

    job = Jobs().submit("dream", "cpu", fail)
    assert job.finished.wait(5)
    assert job.status() == "error: octaves must be >= 1, got 0"


def test_finished_jobs_are_a_bounded_history_without_tensors():
    def work(job):
        job.watch(torch.zeros(1, 3, 64, 64))
        return job.id

    jobs = Jobs(history=3)
    done = [jobs.submit("dream", "cpu", work) for _ in range(6)]
    assert all(job.finished.wait(10) for job in done)
    assert jobs.counts() == (0, 3)
    assert [jobs.get(job.id) for job in done[:3]] == [None] * 3  # the oldest left the history
    for job in done[3:]:
        kept = jobs.get(job.id)
        assert kept is job and kept.result == job.id and kept.previews == 1 and kept.preview is None
        assert kept.status() == "done"


def test_a_failing_job_logs_its_traceback_and_shows_one_line(caplog):
    def crash(job):
        return {}["missing"]

    with caplog.at_level(logging.INFO, logger="deepdream.studio.jobs"):
        job = Jobs().submit("dream", "cpu", crash)
        assert job.finished.wait(5)
        cancelled = Jobs()
        stopped = cancelled.submit("dream", "cpu", spin(1000))
        while not stopped.done:
            time.sleep(0.01)
        cancelled.cancel(stopped.id)
        assert stopped.finished.wait(5)
    assert job.status() == "error: KeyError: 'missing'"
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 1 and job.id in failed[0].getMessage() and failed[0].exc_info[0] is KeyError
    assert any(r.levelno == logging.INFO and "cancelled" in r.getMessage() for r in caplog.records)


def test_follow_yields_each_change_once_and_ends_with_the_job():
    def work(job):
        job.total = 4
        for _ in range(4):
            time.sleep(0.15)
            job.update()
            job.watch(torch.full((1, 3, 4, 4), float(job.done)))
        return "ok"

    job = Jobs().submit("dream", "cpu", work, steps_per_octave=1)
    seen = list(follow(job, poll=0.02))
    previews = [float(p[0, 0, 0, 0]) for p in seen if p is not None]
    assert job.result == "ok" and previews == sorted(set(previews)) and previews[-1] >= 3
    assert len(seen) <= 2 * 4 + 2  # changes only, not every poll (about 30 polls)


def test_file_logging_writes_tracebacks_into_the_library(tmp_path):
    from deepdream.studio.logs import file_logging

    lib = Library(tmp_path / "lib")
    package = logging.getLogger("deepdream")
    level, handlers = package.level, list(package.handlers)
    with file_logging(lib) as path:
        job = Jobs().submit("dream", "cpu", lambda job: 1 / 0)
        assert job.finished.wait(5)
    assert path == lib.sub("logs") / "studio.log"
    text = path.read_text()
    assert f"job {job.id} (dream) failed: ZeroDivisionError" in text and "Traceback (most recent call last)" in text
    assert package.level == level and package.handlers == handlers  # the front end's setup is undone


def test_ports_that_cannot_be_served_get_one_line():
    check_port("127.0.0.1", None)  # Gradio picks a free one
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=f"port {port} is already in use on 127.0.0.1"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", port)  # free again
    for bad in (0, 70000):
        with pytest.raises(SettingsError, match="between 1 and 65535"):
            check_port("127.0.0.1", bad)
    with pytest.raises(SettingsError, match="not an address of this machine"):
        check_port("no-such-host.invalid", port)


def test_dream_job_previews_each_octave_and_saves_with_settings(tmp_path, lite0, monkeypatch):
    watch = Job.watch
    studio = Studio(Library(tmp_path / "lib"), runs=None)
    photo = tmp_path / "photo.png"
    synthetic_photo(64, 48).save(photo)
    studio.backbones.keep(Settings(device="cpu"), lite0)  # the session's network
    shapes = []
    monkeypatch.setattr(Job, "watch", lambda self, image: (shapes.append(tuple(image.shape)), watch(self, image)))
    job = studio.dream(Settings(octaves=2, iterations=2, seed=9, device="cpu"), photo)
    assert job.finished.wait(120) and job.error is None, job.error
    assert job.total == 4 and job.done == 4 and job.previews >= 2
    assert shapes[-1] == (1, 3, 48, 64)
    assert job.preview is None  # a finished job keeps no tensor
    assert studio.library.gallery() == [job.result]
    assert studio.library.settings_of(job.result).seed == 9


# ---------------------------------------------------------------- library, form, mask


def test_library_hands_out_only_its_own_paths(tmp_path):
    lib = Library(tmp_path / "lib")
    img = synthetic_photo(32, 32)
    img.info["deepdream"] = Settings(seed=5).to_json()
    saved = lib.save(img)
    assert lib.gallery() == [saved] and lib.settings_of(saved).seed == 5
    for path in (tmp_path / "elsewhere.png", lib.sub("results") / ".." / ".." / "x.png", "/etc/passwd"):
        with pytest.raises(OutputError, match="outside the studio library"):
            lib.inside(path)
    (lib.sub("results") / "link.png").symlink_to(tmp_path)
    with pytest.raises(OutputError):
        lib.inside(lib.sub("results") / "link.png")
    mask = np.zeros((4, 4), np.uint8)
    assert lib.save_mask(mask) == lib.save_mask(mask.copy())  # one file per distinct mask


def test_form_round_trips_every_setting():
    s = preset("vgg19-blend").replace(
        layers="features.10:0.5,features.20",
        channels=(1, 2, 5),
        target_class="volcano",
        iterations=7,
        tile_size=256,
        seed=12,
        size=(96, 64),
        guide="/g.png",
        guide_layer="features.20",
    )
    values = form.from_settings(s)
    assert form.to_settings(Settings(), values, seed=12) == s
    checkpoint = form.to_settings(s, {**values, "model": form.CHECKPOINT + "/runs/x/best.pt"}, None)
    assert checkpoint.checkpoint == "/runs/x/best.pt" and checkpoint.seed is None
    with pytest.raises(SettingsError, match="channels"):
        form.to_settings(s, {**values, "channels": "a-b"}, None)
    assert form.channel_list("0-3, 7") == (0, 1, 2, 3, 7) and form.channel_list(" ") == ()
    for bad in ("3-1", "0-99999999", "-1"):
        with pytest.raises(SettingsError, match="channels"):
            form.channel_list(bad)
    with pytest.raises(SettingsError, match="octaves must be >= 1"):
        form.to_settings(s, {**values, "octaves": 0}, None)


def test_painted_layers_become_a_mask():
    blank = np.zeros((4, 6, 4), np.uint8)
    assert mask_from_layers([]) is None and mask_from_layers([blank]) is None
    painted = blank.copy()
    painted[:, 3:, 3] = 255
    mask = mask_from_layers([blank, painted])
    assert mask.shape == (4, 6) and mask[:, :3].max() == 0 and mask[:, 3:].min() == 255


# ---------------------------------------------------------------- video jobs


def test_video_job_resumes_from_its_frames_after_a_restart(tmp_path, lite0):
    """A studio that stopped mid-job leaves a 'running' record; the next one finishes it from the cache."""
    pytest.importorskip("av")
    from deepdream.studio.background import VideoJobs
    from deepdream.video import dream_zoom

    lib = Library(tmp_path / "lib")
    settings = Settings(octaves=1, iterations=1, jitter=0, seed=4, init="noise", size=(32, 32), device="cpu")
    params = {"frames": 3, "zoom": 1.05}
    record = {
        "id": "zoom-test",
        "kind": "zoom",
        "source": None,
        "settings": settings.to_dict(),
        "params": params,
        "state": "running",
        "created": time.time(),
        "message": "",
        "output": str(lib.sub("videos") / "zoom-test.mp4"),
    }
    (lib.sub("jobs") / "zoom-test.json").write_text(json.dumps(record))
    # what the stopped studio had done: the first two frames in the job's work folder
    dream_zoom(
        None,
        tmp_path / "partial.mp4",
        settings,
        **{**params, "frames": 2},
        work_dir=lib.sub("work") / "zoom-test",
        backbone=lite0,
    )
    studio = Studio(lib, runs=None)
    studio.backbones.keep(Settings(device="cpu"), lite0)
    jobs = VideoJobs(studio)
    assert jobs.resume_unfinished() == ["zoom-test"]
    job = studio.jobs.get("zoom-test")
    assert job.finished.wait(120) and job.error is None, job.error
    done = json.loads((lib.sub("jobs") / "zoom-test.json").read_text())
    assert done["state"] == "done" and done["message"] == "3 frames, 1 dreamed now"
    assert (lib.sub("videos") / "zoom-test.mp4").stat().st_size > 0
    assert jobs.resume_unfinished() == []
    stale = {**record, "id": "zoom-old", "settings": {**record["settings"], "octaves": 0}}  # unrunnable now
    (lib.sub("jobs") / "zoom-old.json").write_text(json.dumps(stale))
    assert jobs.resume_unfinished() == []
    kept = json.loads((lib.sub("jobs") / "zoom-old.json").read_text())
    assert kept["state"] == "failed" and "octaves must be >= 1" in kept["message"]


def test_explore_jobs_make_sheets_in_the_library(tmp_path, lite0):
    studio = Studio(Library(tmp_path / "lib"), runs=None)
    studio.backbones.keep(Settings(device="cpu"), lite0)
    photo = tmp_path / "photo.png"
    synthetic_photo(64, 48).save(photo)
    tiny = Settings(octaves=1, iterations=2, jitter=0, seed=2, device="cpu")
    sweep = studio.sweep(tiny, photo, ["blocks.2", "blocks.4"])
    atlas = studio.atlas(tiny, "blocks.4", (0, 3), 32)
    recommended = studio.sweep(tiny.replace(layers="blocks.1"), photo)  # no layers: the network's recommended
    shown = ["input", *sweep_layers(lite0)]
    for job, tiles in (
        (sweep, ["input", "blocks.2", "blocks.4"]),
        (atlas, ["blocks.4:0", "blocks.4:3"]),
        (recommended, shown),
    ):
        assert job.finished.wait(120) and job.error is None, job.error
        assert job.done == job.total > 0
        meta = json.loads(Image.open(job.result).info["deepdream"])
        assert meta["sheet"]["tiles"] == tiles
    assert set(studio.library.gallery()) == {sweep.result, atlas.result, recommended.result}


def test_the_studio_calls_the_library_jobs_only_through_service():
    """The page's modules reach dream, sweep and video jobs through `Studio` (service.py); no studio module
    imports the command line."""
    import ast

    import deepdream.studio as package

    folder = Path(package.__file__).parent
    jobs = {"still", "explore", "video"}  # the library's job modules (audio's options are plain values)
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 2
        }
        assert "cli" not in imported, path.name
        if path.name in ("api.py", "background.py", "dreamtab.py", "exploretab.py", "form.py", "soundtab.py"):
            assert not imported & jobs, (path.name, imported & jobs)


def test_cli_serves_on_loopback_and_prints_the_url(tmp_path):
    pytest.importorskip("gradio")
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepdream", "studio", "--port", str(port), "--runs", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"deepdream studio: http://127.0.0.1:{port}/"), line + proc.stderr.read()
        assert str(tmp_path / "data" / "deepdream" / "studio") in line  # the default library: the user's data dir
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as response:
            assert response.status == 200 and b"deepdream studio" in response.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
