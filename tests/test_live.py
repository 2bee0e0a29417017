"""Live dreaming from the command line and the library: a file source played at its own rate is dreamed and
recorded as shown; every way out (duration, Ctrl-C, the source's end, a stall, a frame size change) leaves a
finished recording or none, never a half-written one, and each bad input is one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from deepdream import imagefiles
from deepdream.cli import main
from deepdream.engine.taps import Taps
from deepdream.errors import VideoError
from deepdream.models.load import load_backbone
from deepdream.settings import Settings
from deepdream.video import live
from deepdream.video.coherence import SteadyCoherence
from deepdream.video.jobs import FrameDreamer
from deepdream.video.live import LiveOptions, LiveSession, NewestFrame, Source, dream_live

TINY = Settings(iterations=2, octaves=1, seed=0)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net():
    return load_backbone("efficientnet_lite0", pretrained=True)


def scene(width: int = 96, height: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // width, yy * 255 // height, 128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)],
                    -1).astype(np.uint8)  # fmt: skip


def write_clip(path: Path, frames: int, size=(96, 64), fps: int = 10) -> Path:
    """A still scene with a little camera noise, H.264 (MPEG-TS when the name says .ts: files that concatenate)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps, options={"crf": "15"})
        v.width, v.height, v.pix_fmt = *size, "yuv420p"
        still = scene(*size)
        for i in range(frames):
            noisy = np.clip(still + np.random.default_rng(i).normal(0, 2, still.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(noisy, format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return path


def decoded(path: Path) -> tuple[list[np.ndarray], float]:
    """The frames of a video and its duration in seconds."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
        return frames, c.duration / av.time_base


def test_cli_live_records_a_playable_file_of_what_was_shown(tmp_path):
    write_clip(tmp_path / "clip.mp4", frames=40)
    r = subprocess.run([sys.executable, "-m", "deepdream", "live", "clip.mp4", "--duration", "2", "-o", "rec.mp4",
                        "--iterations", "2", "--octaves", "1", "--seed", "1"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one summary line
    shown = int(re.search(r"(\d+) frames shown", r.stderr).group(1))
    fps = float(re.search(r"\(([\d.]+) fps\)", r.stderr).group(1))
    frames, seconds = decoded(tmp_path / "rec.mp4")
    assert len(frames) == shown >= 2
    assert fps == pytest.approx(shown / 2, rel=0.35)  # frames per second of a 2 s session
    assert 0.8 < seconds < 2.5  # recorded with the times they were shown
    source = scene()
    assert np.abs(frames[-1].astype(float) - source).mean() > 2  # dreamed, not copied
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "rec.mp4"]  # no temporary left


def test_live_drops_frames_it_cannot_keep_up_with_and_carries_the_dream(tmp_path, net):
    """A 30 fps file is played at its own rate; the dreamer shows fewer frames than arrive, each a warm start."""
    write_clip(tmp_path / "clip.mp4", frames=45, fps=30)
    seen = []
    result = dream_live(tmp_path / "clip.mp4", TINY.replace(iterations=6, octaves=2),
                        LiveOptions(output=tmp_path / "rec.mp4", on_frame=seen.append), backbone=net)  # fmt: skip
    assert result.ended == "the source ended"
    assert result.arrived == 45 and 2 <= result.shown < 45 and result.dropped == 45 - result.shown
    # a full dream, then warm starts: 1 step, plus a new-region dream (6 more) on the odd frame where codec noise
    # makes the flow call a few pixels new; never a full dream again
    warm, step = result.steps[1:], live.STEPS
    assert result.steps[0] == 12 and all(s in (step, step + live.NEW_STEPS) for s in warm), warm
    assert warm.count(step) >= 0.8 * len(warm), warm
    assert result.latency < 2.0
    # a still scene: consecutive dreams differ little, far less than the dream differs from the frame
    change = np.mean([np.abs(b.dream.astype(float) - a.dream).mean() for a, b in zip(seen, seen[1:])])
    dreamed = np.mean([np.abs(f.dream.astype(float) - f.source).mean() for f in seen])
    assert change < 0.35 * dreamed, (change, dreamed)
    assert result.recorded == result.shown == len(decoded(tmp_path / "rec.mp4")[0])


def energy(net, dreamer: FrameDreamer, frame: np.ndarray) -> float:
    """Mean squared activation at the dream layers."""
    with Taps(net.model, dreamer.objective.layers) as taps, torch.no_grad():
        return float(sum(a.pow(2).mean() for a in taps(net.normalize(imagefiles.from_uint8(frame))).values()))


def test_a_cut_in_live_gets_a_capped_dream_that_still_dreams_while_a_video_keeps_its_full_dream(net):
    """A pan or a cut must not stall live: what the flow cannot carry gets new_steps, not a full dream."""
    settings = TINY.replace(iterations=8, octaves=2)
    before = scene()
    rng = np.random.default_rng(3)  # another scene: nothing of it can be carried from the one before
    cut = cv2.GaussianBlur(rng.integers(0, 256, before.shape, dtype=np.uint8), (0, 0), 2)
    session = LiveSession(settings, net, max_side=None, new_steps=3)
    session(before)
    dream, steps = session(cut)
    full = session.dreamer.full_steps(*cut.shape[:2])
    assert steps == 3 < full == 16
    assert energy(net, session.dreamer, dream) > 1.2 * energy(net, session.dreamer, cut)  # still a dream
    session.close()
    with FrameDreamer(settings, net) as dreamer:  # deepdream video: a cut gets a full dream
        video = SteadyCoherence()
        first = video.dream_frame(dreamer, before, None, None)
        taken = dreamer.steps
        video.dream_frame(dreamer, cut, before, first)
        assert dreamer.steps - taken == full


def test_ctrl_c_finishes_the_recording(tmp_path, net):
    write_clip(tmp_path / "clip.mp4", frames=60)

    def interrupt(frame):
        if frame.index == 2:
            raise KeyboardInterrupt

    result = dream_live(tmp_path / "clip.mp4", TINY, LiveOptions(output=tmp_path / "rec.mp4", on_frame=interrupt),
                        backbone=net)  # fmt: skip
    assert result.ended == "interrupted" and result.recorded == 3
    assert len(decoded(tmp_path / "rec.mp4")[0]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "rec.mp4"]


def test_a_stalled_source_keeps_the_recording_so_far(tmp_path, net, monkeypatch):
    def stalling(spec, stall):
        def read(out: NewestFrame, stop: threading.Event) -> None:
            for _ in range(3):
                out.put(scene())
                stop.wait(0.3)
            stop.wait()  # then nothing, without ending: a camera unplugged, a stream that hangs

        return Source("stalling", read, lambda: None)

    monkeypatch.setattr(live, "open_source", stalling)
    with pytest.raises(VideoError, match=r"stalled: no frame for 1 s; the \d frames before it are recorded"):
        dream_live("stalling", TINY, LiveOptions(output=tmp_path / "rec.mp4", stall=1.0), backbone=net)
    frames, _ = decoded(tmp_path / "rec.mp4")
    assert 1 <= len(frames) <= 3


def test_a_frame_size_change_mid_stream_is_one_line_and_the_recording_is_kept(tmp_path, net):
    a = write_clip(tmp_path / "a.ts", frames=8, size=(96, 64))
    b = write_clip(tmp_path / "b.ts", frames=8, size=(128, 96))
    changing = tmp_path / "changing.ts"
    changing.write_bytes(a.read_bytes() + b.read_bytes())
    with pytest.raises(VideoError, match="frame size changed from 96x64 to 128x96") as err:
        dream_live(changing, TINY, LiveOptions(output=tmp_path / "rec.mp4"), backbone=net)
    assert "\n" not in str(err.value)
    assert (tmp_path / "rec.mp4").exists() == ("recorded in" in str(err.value))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("source, message", [
    ("7", "camera 7 cannot be opened: it does not exist, or another program is using it"),
    ("/dev/video-missing", "no such device: /dev/video-missing"),
    ("missing.mp4", "no such file: missing.mp4"),
    ("rtsp://127.0.0.1:9/none", "cannot open the stream rtsp://127.0.0.1:9/none"),
])  # fmt: skip
def test_bad_sources_are_one_line_and_leave_no_recording(tmp_path, capsys, monkeypatch, source, message):
    monkeypatch.chdir(tmp_path)
    assert main(["live", source, "-o", "rec.mp4", "--stall", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"deepdream: error: {message}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
