"""Videos: frames, fps, size and audio survive; flow coherence lowers flicker; resume skips finished
frames; zoom loops reach the requested frame count in MP4 and GIF; bad inputs fail cleanly."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import deepdream.models.load
from deepdream.cli import main
from deepdream.errors import OutputError, SettingsError, VideoError
from deepdream.models.load import load_backbone
from deepdream.settings import Settings
from deepdream.video import dream_video, dream_zoom
from deepdream.video.coherence import FlowCoherence
from deepdream.video.flow import dis_flow, flicker, visible, warp, warp_error
from deepdream.video.jobs import zoom_step, zoom_transform
from deepdream.video.reading import DEFAULT_FPS, even_size, parse_time, probe, read_frames

TINY = Settings(iterations=2, octaves=1, seed=0)
# the tests share two CPU cores with other jobs; OpenMP spin-waiting makes 2 threads far slower there than 1
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net():
    return load_backbone("efficientnet_lite0", pretrained=True)


def make_clip(
    path: Path,
    frames: int = 6,
    size=(96, 64),
    fps: int = 12,
    audio: str | None = "aac",
    speed: int = 3,
    noise: float = 0,
) -> Path:
    """A static background with a square moving right `speed` px per frame, camera noise of `noise`
    levels (sigma), and a 440 Hz tone."""
    w, h = size
    rate = 44100
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps, options={"crf": "15"})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = out.add_stream(audio, rate=rate, layout="stereo") if audio else None
        yy, xx = np.mgrid[0:h, 0:w]
        background = np.stack(
            [xx * 255 // w, yy * 255 // h, 128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0)], -1
        ).astype(np.uint8)
        samples = rate // fps
        for i in range(frames):
            img = background.copy()
            x0 = 8 + speed * i
            img[h // 3 : h // 3 + 20, x0 : x0 + 20] = (250, 220, 30)
            if noise:
                img = np.clip(img + np.random.default_rng(i).normal(0, noise, img.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
            if a is not None:
                t = (np.arange(samples) + i * samples) / rate
                tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                af.sample_rate, af.pts = rate, i * samples
                out.mux(a.encode(af))
        out.mux(v.encode(None))
        if a is not None:
            out.mux(a.encode(None))
    return path


def streams(path: Path) -> dict:
    """Decoded facts about a video file: frame count, fps, size, audio codec and seconds."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        fps = v.average_rate
    with av.open(str(path)) as c:
        audio = c.streams.audio[0] if c.streams.audio else None
        codec = audio.codec_context.name if audio else None
        samples = sum(f.samples for f in c.decode(audio)) if audio else 0
        seconds = samples / audio.codec_context.sample_rate if audio else 0.0
    return {"frames": frames, "fps": fps, "size": frames[0].shape[1::-1], "audio": codec, "audio_seconds": seconds}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepdream", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )


def leftovers(folder: Path, *names: str) -> list[str]:
    """Files in `folder` other than `names` (temp files of an atomic write would show here)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in names)


# ------------------------------------------------------------------------------------------ end to end


def test_cli_video_keeps_frames_fps_size_and_audio(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=6, fps=12)
    r = run_cli(
        "video", "clip.mp4", "-o", "out.mp4", "--iterations", "2", "--octaves", "1", "--seed", "3", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert "wrote out.mp4: 6 frames" in r.stderr and "audio copied (aac)" in r.stderr
    got, src = streams(tmp_path / "out.mp4"), streams(clip)
    assert len(got["frames"]) == 6
    assert got["fps"] == 12
    assert tuple(got["size"]) == (96, 64)
    assert got["audio"] == "aac"
    assert got["audio_seconds"] == pytest.approx(src["audio_seconds"], abs=0.05)
    # it was dreamed, not copied
    assert np.abs(got["frames"][0].astype(float) - src["frames"][0]).mean() > 3
    # the default work folder is gone once the output is written; the settings travel in the file
    assert leftovers(tmp_path, "clip.mp4", "out.mp4") == []
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert '"seed": 3' in c.metadata.get("comment", "")


def test_start_duration_max_size_and_one_network_load(tmp_path, net, monkeypatch):
    clip = make_clip(tmp_path / "clip.mp4", frames=12, fps=12)
    loads = []

    def counting_load(*args, **kwargs):
        loads.append(args)
        return net

    monkeypatch.setattr(deepdream.models.load, "load_backbone", counting_load)
    result = dream_video(clip, tmp_path / "part.mp4", TINY, start=0.25, duration=0.5, max_side=48)
    assert len(loads) == 1  # one load for all the frames
    got = streams(tmp_path / "part.mp4")
    assert result.frames == len(got["frames"]) == 6  # frames at t = 3/12 .. 8/12
    assert tuple(got["size"]) == (48, 32) == result.size
    assert got["fps"] == 12
    assert got["audio_seconds"] == pytest.approx(0.5, abs=0.06)
    # the first output frame is the dream of input frame 3 (the square at x = 8 + 9)
    first = got["frames"][0].astype(float)
    inputs = list(read_frames(clip, size=(48, 32)))
    assert np.abs(first - inputs[3]).mean() < np.abs(first - inputs[0]).mean()


def test_audio_reencoded_when_the_container_cannot_take_it(tmp_path, net):
    clip = make_clip(tmp_path / "clip.mkv", frames=3, audio="pcm_s16le")
    result = dream_video(clip, tmp_path / "out.mp4", TINY, backbone=net)
    assert result.audio == "audio re-encoded (pcm_s16le -> aac)"
    got = streams(tmp_path / "out.mp4")
    assert got["audio"] == "aac" and got["audio_seconds"] > 0.2 and len(got["frames"]) == 3


def test_rotated_phone_clip_comes_out_upright(tmp_path):
    """An MP4 whose track matrix says 'turn 90 degrees clockwise' (how phones store portrait clips)."""
    clip = make_clip(tmp_path / "clip.mp4", frames=2, audio=None)
    identity = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    clockwise = struct.pack(">9I", 0, 0x10000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000)
    data = clip.read_bytes()
    at = data.find(identity, data.find(b"tkhd"))
    rotated = tmp_path / "rotated.mp4"
    rotated.write_bytes(data[:at] + clockwise + data[at + len(identity) :])
    info = probe(rotated)
    assert (info.width, info.height) == (64, 96)
    upright = next(read_frames(rotated))
    stored = next(read_frames(clip))
    assert upright.shape == (96, 64, 3)
    assert np.abs(upright.astype(float) - np.rot90(stored, -1)).mean() < 1


# ------------------------------------------------------------------------------------------ coherence


def test_flow_coherence_lowers_flicker_at_the_same_strength(tmp_path, net):
    clip = make_clip(tmp_path / "clip.mp4", frames=8, size=(128, 80), speed=2, audio=None)
    settings = Settings(iterations=3, octaves=2, seed=0)
    inputs = list(read_frames(clip))
    measured = {}
    for flow in ("none", "dis"):
        dream_video(clip, tmp_path / f"{flow}.mp4", settings, flow=flow, backbone=net)
        outs = list(read_frames(tmp_path / f"{flow}.mp4"))
        strength = np.mean([np.abs(o.astype(float) - i).mean() for o, i in zip(outs, inputs)])
        measured[flow] = flicker(outs), strength
    (plain, plain_strength), (coherent, coherent_strength) = measured["none"], measured["dis"]
    assert coherent < 0.7 * plain, measured
    assert coherent_strength > 0.8 * plain_strength, measured  # not just a weaker dream


def test_steady_video_holds_still_where_the_scene_does(tmp_path, net):
    """Issue 13: on a tripod shot (only camera noise changes) the default dream does not boil."""
    clip = make_clip(tmp_path / "clip.mp4", frames=6, size=(128, 80), speed=0, noise=2, audio=None)
    settings = Settings(iterations=3, octaves=2, seed=0)
    sources = list(read_frames(clip))
    measured = {}
    for flow, evolve in (("none", False), ("dis", False), ("dis", True)):
        out = tmp_path / f"{flow}{evolve}.mp4"
        dream_video(clip, out, settings, flow=flow, evolve=evolve, backbone=net)
        outs = list(read_frames(out))
        strength = np.mean([np.abs(o.astype(float) - i).mean() for o, i in zip(outs, sources)])
        measured[flow, evolve] = warp_error(outs, sources), strength
    (plain, plain_strength), (steady, steady_strength) = measured["none", False], measured["dis", False]
    assert steady * 4 < plain, measured
    assert steady_strength > 0.8 * plain_strength, measured  # not just a weaker dream
    assert measured["dis", True][0] > 2 * steady, measured  # --evolve keeps re-dreaming


def activation(net, layers, frames) -> list[float]:
    """Mean squared activation at the dream layers, per frame."""
    from deepdream import imagefiles
    from deepdream.engine.taps import Taps

    with Taps(net.model, layers) as taps, torch.no_grad():
        return [float(sum(a.pow(2).mean() for a in taps(net.normalize(imagefiles.from_uint8(f))).values()))
                for f in frames]  # fmt: skip


def test_warm_started_steady_video_keeps_its_look_for_fewer_steps(tmp_path, net):
    """Issue 21: a carried frame starts from the carried dream and gets a few steps, not a whole dream; on a
    tripod shot it holds as still and dreams as strongly as the full dream of every frame did."""
    clip = make_clip(tmp_path / "clip.mp4", frames=6, size=(128, 80), speed=0, noise=2, audio=None)
    settings = Settings(iterations=4, octaves=2, seed=0)
    sources = list(read_frames(clip))
    layers = list(settings.layers) if settings.layers else None
    measured = {}
    for warm in (False, True):
        out = tmp_path / f"{warm}.mp4"
        result = dream_video(clip, out, settings, warm_start=warm, backbone=net)
        outs = list(read_frames(out))
        from deepdream.engine.objectives import build_objective

        layers = build_objective(net, settings, None).layers
        gain = [o / i for o, i in zip(activation(net, layers, outs), activation(net, layers, sources))]
        measured[warm] = warp_error(outs, sources), min(gain), result.steps
    (full_error, full_gain, full_steps), (warm_error, warm_gain, warm_steps) = measured[False], measured[True]
    assert full_steps == (8,) * 6  # 4 steps on each of 2 octaves, every frame
    assert warm_steps[0] == 8 and min(warm_steps[1:]) == 2, warm_steps  # then warm starts (2 steps) ...
    assert sum(warm_steps[1:]) <= 0.5 * sum(full_steps[1:]), warm_steps  # ... and seldom a patch of new pixels
    assert warm_error < max(1.25 * full_error, full_error + 0.5), measured
    assert warm_gain > 0.9 * full_gain and warm_gain > 1.5, measured


def test_visible_finds_what_a_moving_square_uncovers():
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), (0, 0), 1.5)
    prev, frame = background.copy(), background.copy()
    prev[32:64, 30:62] = (250, 220, 30)
    frame[32:64, 38:70] = (250, 220, 30)  # moved 8 px right: x 30..37 uncovered
    back, ok = visible(dis_flow(), frame, prev)
    assert ok[:, 90:].mean() > 0.95 and ok[:28].mean() > 0.9  # still background, borders included
    assert ok[36:60, 31:37].mean() < 0.3  # uncovered: behind the square in the previous frame
    assert ok[40:56, 46:62].all()  # the square itself is seen in both frames
    assert np.abs(back[40:56, 46:62, 0] + 8).mean() < 1.5  # ... and came from 8 px to the left


def test_warp_follows_the_flow():
    a = np.zeros((32, 48, 3), np.uint8)
    a[10:20, 10:20] = 255
    b = np.roll(a, 3, axis=1)  # the square moved 3 px right
    flow = dis_flow()(b[..., 0].copy(), a[..., 0].copy())  # where b's pixels were in a
    warped = warp(a, flow)
    assert np.abs(warped.astype(float) - b).mean() < 0.25 * np.abs(a.astype(float) - b).mean()


# ------------------------------------------------------------------------------------------ resume


class Interrupt(Exception):
    pass


def test_resume_skips_finished_frames_and_matches_an_uninterrupted_run(tmp_path, net):
    clip = make_clip(tmp_path / "clip.mp4", frames=6, audio=None)
    out, work = tmp_path / "out.mp4", tmp_path / "work"

    def stop_after_two(index):
        if index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dream_video(clip, out, TINY, work_dir=work, backbone=net, on_frame=stop_after_two)
    assert not out.exists()  # written only when complete
    assert sorted(p.name for p in work.glob("frame_*.png")) == [f"frame_{i:06d}.png" for i in range(3)]

    with pytest.raises(OutputError, match="--resume"):  # old frames are not silently overwritten
        dream_video(clip, out, TINY, work_dir=work, backbone=net)
    with pytest.raises(SettingsError, match="iterations"):  # nor mixed with other settings
        dream_video(clip, out, TINY.replace(iterations=3), work_dir=work, backbone=net, resume=True)

    dreamed = []
    result = dream_video(clip, out, TINY, work_dir=work, backbone=net, resume=True, on_frame=dreamed.append)
    assert dreamed == [3, 4, 5] and result.dreamed == 3 and result.frames == 6
    assert len(streams(out)["frames"]) == 6

    straight = tmp_path / "straight"
    dream_video(clip, tmp_path / "straight.mp4", TINY, work_dir=straight, backbone=net)
    for i in range(6):
        a = np.asarray(Image.open(work / f"frame_{i:06d}.png"))
        b = np.asarray(Image.open(straight / f"frame_{i:06d}.png"))
        assert np.array_equal(a, b), f"frame {i} differs after resuming"


# ------------------------------------------------------------------------------------------ zoom


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_zoom_writes_the_requested_frames(tmp_path, net, ext):
    photo = tmp_path / "photo.png"
    Image.fromarray(make_photo()).save(photo)
    out = tmp_path / f"zoom{ext}"
    result = dream_zoom(photo, out, TINY, frames=5, zoom=1.1, rotate=3, fps=10, backbone=net)
    got = streams(out)
    assert len(got["frames"]) == result.frames == 5
    assert tuple(got["size"]) == (96, 64)
    assert got["fps"] == 10
    assert got["audio"] is None
    # each frame is the previous one zoomed and turned, then dreamed a little more
    matrix = zoom_transform((96, 64), 1.1, 3, (0, 0))
    for a, b in zip(got["frames"], got["frames"][1:]):
        moved = zoom_step(a, matrix)
        assert np.abs(moved.astype(float) - b).mean() < 0.6 * np.abs(a.astype(float) - b).mean()


def test_zoom_resume_extends_the_loop(tmp_path, net):
    work = tmp_path / "work"
    dream_zoom(
        None, tmp_path / "a.gif", TINY.replace(init="noise", size=(64, 64)), frames=3, work_dir=work, backbone=net
    )
    result = dream_zoom(
        None,
        tmp_path / "b.gif",
        TINY.replace(init="noise", size=(64, 64)),
        frames=5,
        work_dir=work,
        resume=True,
        backbone=net,
    )
    assert (result.frames, result.dreamed) == (5, 2)
    assert len(streams(tmp_path / "b.gif")["frames"]) == 5


def test_video_mask_keeps_every_black_pixel_of_every_frame(tmp_path, net):
    """--mask on a video: black keeps each frame exactly (in the cached frames; the MP4 is lossy), though the
    steady coherence carries the previous dream forward; white dreams."""
    clip = make_clip(tmp_path / "clip.mp4", frames=4, size=(96, 64), audio=None)
    mask = np.zeros((64, 96), np.uint8)
    mask[:, 48:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    settings = Settings(iterations=3, octaves=1, seed=0, mask=str(tmp_path / "mask.png"))
    dream_video(clip, tmp_path / "out.mp4", settings, backbone=net, work_dir=tmp_path / "frames")
    sources, dreams = list(read_frames(clip)), cached_frames(tmp_path / "frames")
    assert len(dreams) == len(sources) == 4
    for source, dreamed in zip(sources, dreams):
        np.testing.assert_array_equal(dreamed[:, :48], source[:, :48])
        assert np.abs(dreamed[:, 48:].astype(float) - source[:, 48:]).mean() > 3


def test_zoom_refuses_a_mask(tmp_path, net):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "mask.png")
    with pytest.raises(SettingsError, match="zoom does not take --mask"):
        dream_zoom(
            None, tmp_path / "z.mp4", Settings(init="noise", mask=str(tmp_path / "mask.png")), frames=2, backbone=net
        )
    assert not (tmp_path / "z.mp4").exists()


def cached_frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("frame_*.png"))]


def test_interrupted_zoom_resumes_to_the_frames_of_an_uninterrupted_run(tmp_path, net):
    photo = tmp_path / "photo.png"
    Image.fromarray(make_photo()).save(photo)
    work = tmp_path / "work"
    options = dict(frames=6, zoom=1.1, rotate=3, translate=(1.5, -1), fps=10, backbone=net)

    def stop_after_two(index):
        if index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dream_zoom(photo, tmp_path / "z.mp4", TINY, work_dir=work, on_frame=stop_after_two, **options)
    assert not (tmp_path / "z.mp4").exists() and len(cached_frames(work)) == 3
    dreamed = []
    dream_zoom(photo, tmp_path / "z.mp4", TINY, work_dir=work, resume=True, on_frame=dreamed.append, **options)
    assert dreamed == [3, 4, 5]  # the loop continued from the cached frame 2, not from the start image
    dream_zoom(photo, tmp_path / "straight.mp4", TINY, work_dir=tmp_path / "straight", **options)
    resumed, straight = cached_frames(work), cached_frames(tmp_path / "straight")
    assert len(resumed) == len(straight) == 6
    for i, (a, b) in enumerate(zip(resumed, straight)):
        assert np.array_equal(a, b), f"frame {i} differs after resuming"
    assert len(streams(tmp_path / "z.mp4")["frames"]) == 6  # (x264's threads make the encoded bytes vary run to run)
    assert not np.array_equal(resumed[3], resumed[2])  # the loop moved on


def test_zoom_values_per_frame_from_a_sequence_or_a_function(tmp_path, net):
    noise = TINY.replace(init="noise", size=(64, 64))
    runs = {}
    for name, zoom, strength in [
        ("constant", 1.1, 1.0),
        ("sequence", [1.1, 1.1, 1.1], lambda i: 1.0),
        ("changed", lambda i: (1.1, 1.1, 0.8)[i], [1.0, 1.0, 2.0]),
    ]:
        dream_zoom(
            None,
            tmp_path / f"{name}.gif",
            noise,
            frames=3,
            zoom=zoom,
            strength=strength,
            work_dir=tmp_path / name,
            backbone=net,
        )
        runs[name] = cached_frames(tmp_path / name)
    assert all(np.array_equal(a, b) for a, b in zip(runs["constant"], runs["sequence"]))
    assert all(np.array_equal(a, b) for a, b in zip(runs["constant"][:2], runs["changed"][:2]))
    assert np.abs(runs["changed"][2].astype(float) - runs["constant"][2]).mean() > 5  # frame 2 used its own values
    with pytest.raises(SettingsError, match="zoom has 2 values for 3 frames"):
        dream_zoom(None, tmp_path / "short.gif", noise, frames=3, zoom=[1.1, 1.2], backbone=net)
    with pytest.raises(SettingsError, match="strength must be a positive finite number"):
        dream_zoom(None, tmp_path / "bad.gif", noise, frames=2, strength=lambda i: -1.0, backbone=net)


def test_cli_zoom_gif_from_noise(tmp_path):
    r = run_cli(
        "zoom",
        "-o",
        "z.gif",
        "--init",
        "noise",
        "--size",
        "64x48",
        "--frames",
        "4",
        "--iterations",
        "1",
        "--octaves",
        "1",
        "--rotate",
        "2",
        "--translate",
        "1,0",
        "-q",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert len(streams(tmp_path / "z.gif")["frames"]) == 4
    assert leftovers(tmp_path, "z.gif") == []


def make_photo() -> np.ndarray:
    yy, xx = np.mgrid[0:64, 0:96]
    return np.stack([xx * 2, yy * 3, 128 + 100 * np.sin(xx / 4.0)], -1).clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ errors


def test_cli_bad_input_is_one_line_in_a_subprocess(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video at all\n")
    r = run_cli("video", "notes.mp4", "-o", "out.mp4", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == "deepdream: error: notes.mp4 is not a video FFmpeg can read\n"
    assert leftovers(tmp_path, "notes.mp4") == []


def _empty_video_stream(path: Path) -> Path:
    """An MKV whose video stream has no frames (only its audio track has packets)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        a = out.add_stream("aac", rate=8000, layout="mono")
        f = av.AudioFrame.from_ndarray(np.zeros((1, 4000), np.float32), format="fltp", layout="mono")
        f.sample_rate, f.pts = 8000, 0
        out.mux(a.encode(f))
        out.mux(a.encode(None))
    return path


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=8000, layout="mono")
        f = av.AudioFrame.from_ndarray(np.zeros((1, 4000), np.float32), format="fltp", layout="mono")
        f.sample_rate, f.pts = 8000, 0
        out.mux(a.encode(f))
        out.mux(a.encode(None))
    return path


def _unknown_codec(path: Path) -> Path:
    """An AVI whose video FourCC no decoder knows (written as MPEG-4 Part 2, then relabelled)."""
    tmp = path.with_suffix(".tmp.avi")
    with av.open(str(tmp), "w") as out:
        v = out.add_stream("mpeg4", rate=10)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    data = tmp.read_bytes()
    assert b"FMP4" in data
    path.write_bytes(data.replace(b"FMP4", b"QQZZ"))
    tmp.unlink()
    return path


@pytest.mark.parametrize(
    "make, args, message",
    [
        (lambda d: _audio_only(d / "in.m4a"), [], "has no video stream (audio)"),
        (lambda d: _empty_video_stream(d / "in.mkv"), [], "has no video frames"),
        (lambda d: _unknown_codec(d / "in.avi"), [], "video codec is not supported"),
        (
            lambda d: (d / "in.mp4").write_bytes(make_clip(d / "c.mp4").read_bytes()[:3000]) and d / "in.mp4",
            [],
            "not a video",
        ),
        (lambda d: Image.fromarray(make_photo()).save(d / "in.png") or d / "in.png", [], "still image"),
        (lambda d: make_clip(d / "in.mp4"), ["--start", "10"], "nothing to dream from 10.0s"),
        (lambda d: make_clip(d / "in.mp4"), ["--init", "noise"], "--init noise does not apply"),
        (lambda d: d / "missing.mp4", [], "no such file"),
    ],
    ids=[
        "audio-only",
        "zero-frames",
        "unknown-codec",
        "truncated",
        "still-image",
        "start-past-end",
        "noise-init",
        "missing",
    ],
)
def test_video_errors(tmp_path, capsys, make, args, message):
    source = make(tmp_path)
    before = set(tmp_path.iterdir())
    assert main(["video", str(source), "-o", str(tmp_path / "out.mp4"), "-q", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("deepdream: error: ") and message in err and err.count("\n") == 1
    assert set(tmp_path.iterdir()) == before  # no output, no temp file, no work folder


@pytest.mark.parametrize(
    "args, message",
    [
        (["--start", "1:75"], "below 60"),
        (["--duration", "0"], "must be positive"),
        (["--blend", "1.5"], "[0, 1]"),
        (["--flow", "lucas"], "invalid choice"),
    ],
)
def test_video_usage_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["video", "in.mp4", "-o", str(tmp_path / "out.mp4"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_output_checks(tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", frames=2)
    (tmp_path / "taken.mp4").write_bytes(b"keep me")
    cases = [
        (["-o", str(tmp_path / "taken.mp4")], "exists (use --force"),
        (["-o", str(clip), "--force"], "refusing to overwrite the input"),
        (["-o", str(tmp_path / "out.avi")], "unknown video format '.avi'"),
        (["-o", str(tmp_path / "nowhere" / "out.mp4")], "does not exist"),
    ]
    for extra, message in cases:
        assert main(["video", str(clip), "-q", *extra]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert (tmp_path / "taken.mp4").read_bytes() == b"keep me"
    assert leftovers(tmp_path, "clip.mp4", "taken.mp4") == []


def test_zoom_errors(tmp_path, capsys):
    assert main(["zoom", "-o", str(tmp_path / "z.gif")]) == 1
    assert "give a start image, or --init noise" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_text("nope")
    assert main(["zoom", str(tmp_path / "bad.jpg"), "-o", str(tmp_path / "z.mp4")]) == 1
    assert "not an image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["zoom", "-o", str(tmp_path / "z.gif"), "--init", "noise", "--translate", "1"])
    assert "DX,DY" in capsys.readouterr().err
    assert leftovers(tmp_path, "bad.jpg") == []


def test_parse_time():
    assert parse_time("5") == 5
    assert parse_time("2.5") == 2.5
    assert parse_time("1:30") == 90
    assert parse_time("00:00:02") == 2
    assert parse_time("01:02:03.5") == 3723.5
    for bad in ("", "-1", "1:60", "a", "1:2:3:4", "nan"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_even_size():
    assert even_size(97, 65) == (96, 64)
    assert even_size(1920, 1080, 640) == (640, 360)
    assert FlowCoherence("none").refresh == 1.0
    assert FlowCoherence("dis", 0.8).refresh == pytest.approx(0.6)
    assert Fraction(DEFAULT_FPS) == 25


ENCODE = """
import hashlib, os, sys
from fractions import Fraction
import numpy as np
from deepdream.video.writing import write_video
if sys.argv[2] == "one-core":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
rng = np.random.default_rng(0)
write_video(sys.argv[1], [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(12)], fps=12, comment="x")
print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to compare against one")
def test_the_same_frames_are_the_same_bytes_on_one_core_and_on_several(tmp_path):
    """Batch and Ray workers may have any number of cores: x264's thread count is fixed, not the machine's."""
    digests = {
        cores: subprocess.run(
            [sys.executable, "-c", ENCODE, str(tmp_path / f"{cores}.mp4"), cores],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for cores in ("one-core", "all-cores")
    }
    assert digests["one-core"] == digests["all-cores"]


def test_old_flow_blend_spellings_warn_and_still_work(tmp_path, capsys):
    """Issue 23: `video --blend` is now --flow-blend, dream_video(blend=, max_size=) flow_blend= and max_side=."""
    missing = str(tmp_path / "missing.mp4")
    assert main(["video", missing, "-o", str(tmp_path / "out.mp4"), "--blend", "0.5"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("deepdream: warning: video --blend is deprecated, use --flow-blend (the old spelling goes "
                      "in the next release)")  # fmt: skip
    assert err[1].startswith("deepdream: error: no such file") and len(err) == 2
    with pytest.warns(DeprecationWarning, match="blend=...\\) is now flow_blend"), pytest.raises(VideoError):
        dream_video(missing, tmp_path / "out.mp4", blend=0.5)
    with pytest.raises(SettingsError, match="flow blend must be in"):
        dream_video(missing, tmp_path / "out.mp4", flow_blend=2.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        dream_video(missing, tmp_path / "out.mp4", bogus=1)


def test_new_regions_cover_what_the_flow_could_not_carry():
    from deepdream.video.coherence import new_regions

    new = np.zeros((120, 160), bool)
    new[:, 156:] = True  # a pan's entering strip
    new[50:60, 40:50] = True  # an uncovered patch
    boxes = sorted(new_regions(new, margin=4, min_size=32))
    assert boxes == [(0, 120, 128, 160), (39, 71, 29, 61)]  # margin added, grown to 32 px, kept inside
    for y0, y1, x0, x1 in boxes:
        assert y1 - y0 >= 32 and x1 - x0 >= 32
    covered = np.zeros_like(new)
    for y0, y1, x0, x1 in boxes:
        covered[y0:y1, x0:x1] = True
    assert covered[new].all()
    close = np.zeros((120, 160), bool)
    close[10:12, 10:12] = close[10:12, 30:32] = True  # grown to 32 px, the two boxes overlap: one box
    assert len(new_regions(close, margin=2, min_size=32)) == 1
    assert new_regions(np.zeros((8, 8), bool), 4, 32) == []
    specks = new.copy()
    specks[100, 20] = True  # a 1-pixel speck
    specks[5:8, 100:103] = True  # a 9-pixel one
    assert len(new_regions(specks, margin=4, min_size=32)) == 4
    assert sorted(new_regions(specks, margin=4, min_size=32, min_area=10)) == boxes  # live leaves specks out


def test_live_gives_noise_specks_no_steps_of_their_own():
    """A flat, noisy scene: the flow's checks fail on scattered pixels; live dreaming (new_steps set) spends
    only the warm step on them, where the video gives each speck a box of steps."""
    from deepdream.video.coherence import SteadyCoherence

    calls = []

    class Counting:
        min_size = 16

        def dream(self, image, strength=1.0, *, steps=None, octaves=None, region=None):
            calls.append(region)
            y0, y1, x0, x1 = region or (0, image.shape[0], 0, image.shape[1])
            return np.clip(image[y0:y1, x0:x1] * 255, 0, 255).astype(np.uint8)

        def full_steps(self, h, w):
            return 40

    frame = np.full((96, 128, 3), 128, np.uint8)
    prev = frame.copy()
    prev[40:45, 60:65] = 0  # a 25-pixel change the flow cannot explain: about 60 new pixels once softened
    for new_steps, boxes in ((None, 1), (6, 0)):
        calls.clear()
        SteadyCoherence("dis-fast", new_steps=new_steps).dream_frame(Counting(), frame, prev, prev)
        assert len(calls) == 1 + boxes  # the warm step, then one per box
