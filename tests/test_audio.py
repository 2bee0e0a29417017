"""Dreaming sounds: the dream reaches the written file, files keep their shape and settings, and every bad
input is one line with no file left behind. Short generated signals at 8 kHz, one octave, few steps."""

from __future__ import annotations

import io as stdio
import json
import os
import struct
import subprocess
import sys
import wave
from contextlib import redirect_stderr
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

import deepdream
from deepdream import audio, locks
from deepdream.audio import dreaming
from deepdream.audio import io as audio_io
from deepdream.audio.spectro import PHASES, Scale, Spectrogram, decibels, griffin_lim, original_phase
from deepdream.cli import main as cli_main
from deepdream.errors import DeepDreamError, OutputError, SettingsError

RATE = 8000
FAST = dict(octaves=1, iterations=8, step_size=0.03, seed=3)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def signal(seconds: float = 1.5, channels: int = 1, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Chirp + tones + noise, channels x samples in [-1, 1]."""
    t = np.arange(round(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    chirp = np.sin(2 * np.pi * (200 * t + (rate / 4 - 200) / (2 * seconds) * t**2))
    x = 0.2 * chirp + 0.1 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1000 * t)
    x = x + 0.05 * rng.standard_normal(t.size)
    return np.stack([x * (1 - 0.2 * c) for c in range(channels)]).astype(np.float32)


def write(path: Path, x: np.ndarray, rate: int = RATE) -> Path:
    layout = {1: "mono", 2: "stereo"}[x.shape[0]]
    info = audio_io.AudioInfo(path, rate, x.shape[0], layout, "", None)
    audio_io.write_audio(path, [x], info, audio_io.output_format(path), "{}")
    return path


@pytest.fixture(scope="module")
def grey_lite0(lite0) -> deepdream.Backbone:
    return dreaming.grey(lite0)


def picture_of(path: Path, top: float | None = None) -> tuple[torch.Tensor, float]:
    x = torch.from_numpy(audio_io.read_all(audio.probe(path)))
    db = decibels(Spectrogram.for_rate(RATE).stft(x).abs().mean(0))
    top = db.max().item() if top is None else top
    return Scale(top).picture(db), top


def score(backbone, settings: deepdream.Settings, picture: torch.Tensor) -> float:
    with deepdream.Dreamer(backbone, deepdream.build_objective(backbone, settings), settings) as dreamer:
        return dreamer.score(picture).item()


@pytest.fixture(scope="module")
def dreamed(tmp_path_factory, grey_lite0):
    """One stereo dream shared by the tests that read its output."""
    folder = tmp_path_factory.mktemp("dreamed")
    src = write(folder / "in.wav", signal(channels=2))
    result = deepdream.dream_audio(src, folder / "out.flac", backbone=grey_lite0, **FAST)
    return src, result


def test_the_dream_raises_the_activation_and_survives_the_written_file(dreamed, grey_lite0):
    src, result = dreamed
    before, top = picture_of(src)
    after, _ = picture_of(result.path, top)
    e0, e1 = score(grey_lite0, result.settings, before), score(grey_lite0, result.settings, after)
    assert e1 > 1.3 * e0, (e0, e1)


def test_output_keeps_rate_channels_and_length(dreamed):
    src, result = dreamed
    a, b = audio.probe(src), audio.probe(result.path)
    assert (b.sample_rate, b.channels) == (a.sample_rate, a.channels) == (RATE, 2)
    x, y = audio_io.read_all(a), audio_io.read_all(b)
    assert y.shape == x.shape == (2, round(1.5 * RATE))
    assert not np.allclose(x, y, atol=1e-3)  # the dream changed the sound


def test_settings_round_trip_and_config_reproduces(dreamed, tmp_path):
    src, result = dreamed
    meta = audio.read_metadata(result.path)
    assert deepdream.settings.from_mapping(meta["deepdream"]) == result.settings
    assert audio.AudioOptions(**meta["audio"]) == result.options
    err = stdio.StringIO()
    with redirect_stderr(err):
        code = cli_main(["audio", str(src), "-o", str(tmp_path / "again.flac"), "--config", str(result.path), "-q"])
    assert code == 0
    again, first = audio_io.read_all(audio.probe(tmp_path / "again.flac")), audio_io.read_all(audio.probe(result.path))
    np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize("suffix", list(audio.OUTPUT_FORMATS))
def test_every_output_format_keeps_rate_channels_length_and_tags(tmp_path, suffix):
    x = signal(seconds=0.7, channels=2)
    path = tmp_path / f"x{suffix}"
    info = audio_io.AudioInfo(path, RATE, 2, "stereo", "", None)
    text = json.dumps({"deepdream": {"seed": 5}, "audio": {}})
    audio_io.write_audio(path, [x[:, :3000], x[:, 3000:]], info, audio_io.output_format(path), text)
    back = audio.probe(path)
    assert (back.sample_rate, back.channels) == (RATE, 2)
    assert audio_io.read_all(back).shape == x.shape
    assert audio.read_metadata(path)["deepdream"] == {"seed": 5}


def test_windows_and_crossfades_rebuild_the_signal_exactly():
    x = signal(seconds=2.0, channels=2)
    length, overlap = 3000, 700
    out = np.zeros_like(x)
    blocks = (x[:, i : i + 1111] for i in range(0, x.shape[1], 1111))
    starts = []
    for start, w in audio_io.windows(blocks, length, overlap):
        n = w.shape[1]
        starts.append(start)
        out[:, start : start + n] += w * dreaming.crossfade(n, overlap, start > 0, start + n < x.shape[1])
    assert len(starts) == 7
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_resynthesis_with_no_change_is_the_input_and_griffin_lim_follows_new_magnitudes():
    geometry = Spectrogram.for_rate(RATE)
    x = torch.from_numpy(signal(seconds=1.0))
    spec = geometry.stft(x)
    phasors = torch.polar(torch.ones_like(spec.abs()), spec.angle())
    kept = original_phase(phasors, spec.abs(), geometry, x.shape[1], 0)
    np.testing.assert_allclose(geometry.istft(spec.abs() * kept, x.shape[1]), x, atol=1e-5)
    # a new magnitude (every other 100 ms muted above 1 kHz): Griffin-Lim lands closer to it than the old phase
    target = spec.abs().clone()
    target[:, 64:, ::4] *= 0.05
    misfit = {
        name: (
            geometry.stft(geometry.istft(target * fn(phasors, target, geometry, x.shape[1], 16), x.shape[1])).abs()
            - target
        )
        .norm()
        .item()
        for name, fn in PHASES.items()
    }
    assert misfit["griffinlim"] < 0.9 * misfit["original"], misfit
    assert griffin_lim(phasors, target, geometry, x.shape[1], 4).shape == spec.shape


def test_survival_steps_put_the_dream_where_the_written_file_keeps_it(tmp_path, grey_lite0):
    """Gain kept in the written file = (written - input) / (dreamed - input), the dreamed picture being the one
    the dream ended with; the survival steps (scored on the resynthesis) must raise it, to >= 70%."""
    src = write(tmp_path / "in.wav", signal())
    x = audio_io.read_all(audio.probe(src))
    before, top = picture_of(src)
    kept = {}
    for steps in (0, 6):
        result = deepdream.dream_audio(
            src, tmp_path / f"out{steps}.wav", backbone=grey_lite0, survival_steps=steps, **FAST
        )
        after, _ = picture_of(result.path, top)
        with deepdream.Dreamer(
            grey_lite0, deepdream.build_objective(grey_lite0, result.settings), result.settings
        ) as dreamer:
            dreamed, _ = dreaming.dream_spectrogram(
                x, dreamer, Spectrogram.for_rate(RATE), Scale(top), result.options, 0
            )
            e0, ed, ew = (dreamer.score(p).item() for p in (before, dreamed, after))
        kept[steps] = (ew - e0) / (ed - e0)
    assert kept[6] >= 0.7 and kept[6] > kept[0] + 0.2, kept


def test_the_grey_network_keeps_the_picture_grey(grey_lite0):
    settings = deepdream.Settings(**FAST)
    picture = Scale(0.0).picture(torch.rand(129, 80) * -60)
    with deepdream.Dreamer(grey_lite0, deepdream.build_objective(grey_lite0, settings), settings) as dreamer:
        out = dreamer.dream(picture)
    assert (out - picture).abs().max() > 0.01
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])


def test_long_input_in_several_windows_keeps_its_length_and_a_video_soundtrack_dreams(tmp_path, grey_lite0):
    src = tmp_path / "clip.mp4"
    x = signal(seconds=2.0)
    with av.open(str(src), "w") as box:
        video = box.add_stream("libx264", rate=8)
        video.width = video.height = 32
        sound = box.add_stream("aac", rate=RATE, layout="mono")
        for i in range(16):
            box.mux(video.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 8, np.uint8), format="rgb24")))
        frame = av.AudioFrame.from_ndarray(x, format="fltp", layout="mono")
        frame.sample_rate = RATE
        box.mux(sound.encode(frame))
        box.mux(sound.encode(None))
        box.mux(video.encode(None))
    result = deepdream.dream_audio(
        src, tmp_path / "out.wav", backbone=grey_lite0, chunk_seconds=0.8, overlap_seconds=0.2, **FAST
    )
    decoded = audio_io.read_all(audio.probe(src))
    assert result.samples == decoded.shape[1] >= 2 * RATE
    assert audio_io.read_all(audio.probe(result.path)).shape == decoded.shape


# --- bad input: one line, no file -------------------------------------------------------------------------------


def silent(path: Path) -> Path:
    return write(path, np.zeros((1, RATE), np.float32))


def truncated(path: Path) -> Path:
    full = write(path.with_name("full.wav"), signal())
    path.write_bytes(full.read_bytes()[:4000])
    return path


def corrupt(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).bytes(20000))
    return path


def picture_file(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (32, 32)).save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def absurd_rate(path: Path, rate: int) -> Path:
    data = bytearray(write(path, signal(seconds=0.3)).read_bytes())
    fmt = data.find(b"fmt ")
    struct.pack_into("<II", data, fmt + 12, rate, rate * 2)  # sample rate, bytes per second
    path.write_bytes(bytes(data))
    return path


BAD_INPUTS = {
    "no audio stream": (picture_file, "has no audio stream"),
    "silence": (silent, "is silent"),
    "truncated": (truncated, "is truncated"),
    "corrupt": (corrupt, "FFmpeg can read"),
    "missing": (lambda p: p.with_name("nothing.wav"), "no such file"),
    "rate 1 Hz": (lambda p: absurd_rate(p, 1), "sample rate 1 Hz"),
    "rate 50 MHz": (lambda p: absurd_rate(p, 50_000_000), "sample rate 50000000 Hz"),
}


def cli_error(*args: str) -> tuple[int, str]:
    err = stdio.StringIO()
    with redirect_stderr(err):
        code = cli_main(["audio", *map(str, args), "-q", "--octaves", "1", "--iterations", "1"])
    return code, err.getvalue()


def assert_one_line_and_no_file(code: int, err: str, expected: str, folder: Path, before: set) -> None:
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("deepdream: error: ") and expected in err, err
    assert set(folder.iterdir()) == before  # no output, no scratch or temporary file


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_no_file(tmp_path, case):
    make, expected = BAD_INPUTS[case]
    src = make(tmp_path / "in.wav")
    before = set(tmp_path.iterdir())
    assert_one_line_and_no_file(*cli_error(src, "-o", tmp_path / "out.wav"), expected, tmp_path, before)


@pytest.mark.parametrize(
    "output, expected",
    [
        ("out.aac", "unknown audio output format"),
        ("in.wav", "refusing to overwrite the input"),
        ("out.mp3", ".mp3 cannot store 12345 Hz"),
    ],
)
def test_bad_output_is_one_line_and_no_file(tmp_path, output, expected):
    src = write(tmp_path / "in.wav", signal(seconds=0.3), rate=12345)
    before = set(tmp_path.iterdir())
    code, err = cli_error(src, "-o", tmp_path / output, "--force")
    assert_one_line_and_no_file(code, err, expected, tmp_path, before)
    assert (tmp_path / "in.wav").read_bytes() == src.read_bytes()


def test_three_hours_without_the_disk_or_memory_are_refused_up_front(tmp_path, monkeypatch):
    info = audio_io.AudioInfo(tmp_path / "long.flac", 44100, 2, "stereo", "flac", None)
    three_hours = 3 * 3600 * 44100
    geometry = Spectrogram.for_rate(44100)
    options = audio.AudioOptions()
    # as it is here: a window needs the same memory whatever the duration
    dreaming.check_resources(info, RATE, tmp_path / "out.flac", options, geometry)
    monkeypatch.setattr(dreaming.shutil, "disk_usage", lambda path: SimpleNamespace(free=2 << 30))
    with pytest.raises(OutputError, match=r"3.0 h of audio needs 5.3 GB free .* 2.0 GB is free"):
        dreaming.check_resources(info, three_hours, tmp_path / "out.flac", options, geometry)
    monkeypatch.setattr(dreaming, "available_memory", lambda: 200 << 20)
    with pytest.raises(OutputError, match="not enough memory for one 10 s window"):
        dreaming.check_resources(info, RATE, tmp_path / "out.flac", options, geometry)
    # and through the API, before anything is written
    src = write(tmp_path / "in.wav", signal(seconds=0.3))
    before = set(tmp_path.iterdir())
    with pytest.raises(DeepDreamError):
        deepdream.dream_audio(src, tmp_path / "out.wav", **FAST)
    assert set(tmp_path.iterdir()) == before


def test_bad_audio_options_are_settings_errors(tmp_path):
    for bad in (dict(phase="random"), dict(chunk_seconds=1.0, overlap_seconds=0.8), dict(dynamic_range=3.0),
                dict(init="noise"), dict(phase=["original"]), dict(survival_steps="ten"), dict(survival_steps=True),
                dict(griffin_lim_iterations=2.5), dict(chunk_seconds="10")):  # fmt: skip
        with pytest.raises(SettingsError):
            deepdream.dream_audio(tmp_path / "none.wav", tmp_path / "out.wav", **bad)
    # a sound whose stored audio options are not a table of options, given as --config
    src = write(tmp_path / "in.wav", signal(seconds=0.3))
    stored = tmp_path / "stored.wav"
    info = audio_io.AudioInfo(stored, RATE, 1, "mono", "", None)
    audio_io.write_audio(stored, [signal(seconds=0.3)], info, audio_io.output_format(stored),
                         json.dumps({"deepdream": {"octaves": 1}, "audio": 5}))  # fmt: skip
    before = set(tmp_path.iterdir())
    code, err = cli_error(src, "-o", tmp_path / "out.wav", "--config", stored)
    assert_one_line_and_no_file(code, err, "not a table of options", tmp_path, before)


def test_cli_end_to_end_in_a_subprocess(tmp_path):
    src = write(tmp_path / "in.wav", signal(seconds=1.0))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepdream",
            "audio",
            str(src),
            "-o",
            str(tmp_path / "out.ogg"),
            "--octaves",
            "1",
            "--iterations",
            "2",
            "--phase",
            "griffinlim",
            "--griffin-lim-iterations",
            "4",
            "--plot",
            str(tmp_path / "fig.png"),
            "-q",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = audio.probe(tmp_path / "out.ogg")
    assert (out.sample_rate, out.channels) == (RATE, 1)
    assert audio_io.read_all(out).shape == (1, RATE)
    assert audio.read_metadata(out.path)["audio"]["phase"] == "griffinlim"
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run(
        [sys.executable, "-m", "deepdream", "audio", str(tmp_path / "fig.png"), "-o", str(tmp_path / "x.wav")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no audio stream" in bad.stderr


def test_eight_channels_are_read_and_written_without_a_crash(tmp_path):
    """A plain 8-channel PCM WAV crashed PyAV's planar `to_ndarray` (rc 139); the CLI now dreams it, in small windows
    at the shortest chunk and overlap allowed, and every channel reads back exactly."""
    src = tmp_path / "eight.wav"
    pcm = (signal(seconds=0.3, channels=1).repeat(8, 0) * np.linspace(1, 0.3, 8)[:, None] * 32767).astype("<i2")
    with wave.open(str(src), "wb") as w:
        w.setnchannels(8), w.setsampwidth(2), w.setframerate(RATE), w.writeframes(pcm.T.tobytes())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepdream",
            "audio",
            str(src),
            "-o",
            str(tmp_path / "out.flac"),
            "--octaves",
            "1",
            "--iterations",
            "1",
            "--survival-steps",
            "1",
            "--chunk-seconds",
            "0.1",
            "--overlap-seconds",
            "0.01",
            "-q",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = audio.probe(tmp_path / "out.flac")
    assert (out.channels, out.sample_rate) == (8, RATE) and audio_io.read_all(out).shape == (8, pcm.shape[1])
    np.testing.assert_array_equal(audio_io.read_all(audio.probe(src)), pcm / np.float32(32768))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--survival-steps", "1000000000"], "survival steps must be 0-1000"),
        (["--griffin-lim-iterations", "1000000000"], "Griffin-Lim iterations must be 1-1000"),
        (["--chunk-seconds", "0.00002", "--overlap-seconds", "0.00001"], "chunk must be 0.1-600 seconds"),
        (["--chunk-seconds", "3600"], "chunk must be 0.1-600 seconds"),
        (["--overlap-seconds", "0.001"], "overlap must be 0.01 s to half the chunk"),
    ],
)
def test_options_that_would_never_finish_are_one_line(tmp_path, args, expected):
    src = write(tmp_path / "in.wav", signal(seconds=0.3))
    before = set(tmp_path.iterdir())
    assert_one_line_and_no_file(*cli_error(src, "-o", tmp_path / "out.wav", *args), expected, tmp_path, before)


def test_two_runs_on_one_output(tmp_path, monkeypatch):
    src = write(tmp_path / "in.wav", signal(seconds=0.3))
    out = tmp_path / "out.wav"
    with locks.acquire(out):  # a live run (this process) holds the output
        before = set(tmp_path.iterdir())
        assert_one_line_and_no_file(*cli_error(src, "-o", out), "in use by another deepdream run", tmp_path, before)
    real_hold = dreaming.locks.hold

    def finished_meanwhile(*paths):  # another run wrote the output between our check and our lock
        out.write_bytes(b"the other run's sound")
        return real_hold(*paths)

    monkeypatch.setattr(dreaming.locks, "hold", finished_meanwhile)
    with pytest.raises(OutputError, match="exists"):
        deepdream.dream_audio(src, out, **FAST)
    assert out.read_bytes() == b"the other run's sound" and not (tmp_path / ".out.wav.lock").exists()


# --- music-reactive zoom ------------------------------------------------------------------------------------------


def song(path: Path, seconds: float = 2.0, rate: int = RATE) -> Path:
    """Kicks every 0.5 s over a quiet hum, louder in the second half."""
    t = np.arange(round(seconds * rate)) / rate
    kick = np.exp(-(t % 0.5) * 30) * np.sin(2 * np.pi * 80 * t)
    loud = np.where(t >= seconds / 2, 1.0, 0.25)
    return write(path, ((0.6 * kick + 0.03 * np.sin(2 * np.pi * 440 * t)) * loud)[None].astype(np.float32), rate)


def test_envelope_and_onsets_follow_the_song_and_drive_the_schedule(tmp_path):
    from deepdream.audio import music

    env = music.envelope(song(tmp_path / "song.wav"), fps=8)
    assert env.frames == 16 and env.seconds == pytest.approx(2.0)
    kicks = [0, 4, 8, 12]  # frames where a kick starts (every 0.5 s at 8 fps)
    assert set(np.argsort(env.onsets)[-3:]) <= set(kicks)
    assert env.rms[8:].mean() > 3 * env.rms[:8].mean()  # the loud half
    plan = music.music_schedule(env, zoom=1.05, strength=(0.5, 2.0))
    assert plan.frames == 16 and len(plan.zoom) == len(plan.strength) == 16
    assert np.mean(plan.zoom[8:]) > np.mean(plan.zoom[:8]) and max(plan.strength) == pytest.approx(2.0)
    with pytest.raises(DeepDreamError, match="is silent"):
        music.envelope(silent(tmp_path / "quiet.wav"), fps=8)


def test_music_zoom_lasts_as_long_as_the_song_and_carries_it(tmp_path):
    src = song(tmp_path / "song.wav", seconds=1.5)
    out = tmp_path / "zoom.mp4"
    err = stdio.StringIO()
    with redirect_stderr(err):
        code = cli_main(
            [
                "zoom",
                "-o",
                str(out),
                "--audio",
                str(src),
                "--init",
                "noise",
                "--size",
                "64x48",
                "--fps",
                "6",
                "--octaves",
                "1",
                "--iterations",
                "1",
                "--seed",
                "1",
                "-q",
            ]
        )
    assert code == 0, err.getvalue()
    with av.open(str(out)) as box:
        frames = sum(1 for _ in box.decode(video=0))
    with av.open(str(out)) as box:
        heard = sum(f.samples for f in box.decode(audio=0)) / box.streams.audio[0].rate
    assert frames == 9  # 1.5 s at 6 fps
    assert 1.5 <= heard <= 1.5 + 2 * 1024 / RATE  # AAC adds its 1024-sample priming and pads the last frame
    code, err = cli_error_zoom(tmp_path, "--audio", str(src), "--frames", "5")
    assert code == 1 and "leave out --frames" in err


def test_zoom_refuses_a_truncated_song_as_audio_does(tmp_path):
    src = truncated(tmp_path / "cut.wav")
    before = set(tmp_path.iterdir())
    code, err = cli_error_zoom(tmp_path, "--audio", str(src), "--fps", "6", "-q")
    assert_one_line_and_no_file(code, err, "is truncated", tmp_path, before)


def cli_error_zoom(tmp_path: Path, *args: str) -> tuple[int, str]:
    err = stdio.StringIO()
    with redirect_stderr(err):
        code = cli_main(["zoom", "-o", str(tmp_path / "z2.mp4"), "--init", "noise", "--size", "64x48", *args])
    return code, err.getvalue()


def test_levels_follow_the_dream_and_light_up_silence():
    scale = Scale(top=0.0, range=80.0)
    db = torch.tensor([[-20.0, -200.0, -200.0, -40.0]])  # F=1 x T=4: loud, silent, silent, quieter
    picture = scale.picture(db)
    dreamed = picture.clone()
    dreamed[..., 0, 1] = 0.5  # the dream lights the first silent bin at -40 dB
    dreamed[..., 0, 3] = 0.25  # and lowers the quiet one by 20 dB
    levels, lit = scale.levels(db, dreamed)
    torch.testing.assert_close(levels, torch.tensor([[-20.0, -40.0, -200.0, -60.0]]))
    assert lit.tolist() == [[False, True, False, False]]
