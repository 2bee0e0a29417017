"""Audio dreams: strength, survival through the written file, cost, and memory against duration.

    python benchmarks/audio.py                      # strength/survival/cost on a test signal and an espeak-ng voice
    python benchmarks/audio.py --memory 1,10        # peak RSS of 1- and 10-minute files (one fresh process each)
    python benchmarks/audio.py --figure docs/audio/voice.png
    python benchmarks/audio.py --sync               # music zoom: per-frame change against the song's loudness
    python benchmarks/audio.py --decode             # decoding speed, 2 and 8 channels, against the planar reading

Strength: the dream layer's mean squared activation on the dreamed spectrogram picture / on the input's.
Sync: correlation between the mean absolute change from one zoom frame to the next and the song's RMS per frame.
Survival: the same activation on the picture of the WRITTEN file, re-read and analysed again; printed as
the share of the dream's gain that is left, (written - input) / (dreamed - input). "dreamed" is the picture
the dream ended with, after its survival steps (which score the resynthesis; --survival-steps 0 rows show
the dream without them). The judge (--judge, default efficientnet_lite1, same layer) never took part in
the dream: it checks that what survives is the dream, not only the number the survival steps raised.
The inputs are single windows (shorter than --chunk-seconds), so the dreamed picture is recomputed exactly.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import deepdream
from deepdream.audio import dreaming, io
from deepdream.audio.spectro import Scale, Spectrogram, decibels

VOICE_TEXT = (
    "Here the picture is a spectrogram: the sound of this sentence, dreamed by a network trained on photographs."
)


def test_signal(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """A chirp (100 Hz to a quarter of the rate), two steady tones, a pulsing tone and white noise: 1 x n."""
    t = np.arange(round(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    chirp = np.sin(2 * np.pi * (100 * t + (rate / 4 - 100) / (2 * seconds) * t**2))
    tones = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 1320 * t)
    pulse = 0.4 * np.sin(2 * np.pi * 2500 * t) * (np.sin(2 * np.pi * 2 * t) > 0.5)
    return (0.2 * (chirp + tones + pulse) + 0.03 * rng.standard_normal(t.size))[None].astype(np.float32)


def write_wav(path: Path, x: np.ndarray, rate: int) -> Path:
    info = io.AudioInfo(path, rate, x.shape[0], "mono", "", None)
    io.write_audio(path, [x], info, io.output_format(path), "{}")
    return path


def espeak_voice(path: Path) -> Path | None:
    if shutil.which("espeak-ng") is None:
        return None
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), VOICE_TEXT], check=True)
    return path


def picture(path: Path, top: float | None = None) -> tuple[torch.Tensor, float]:
    info = deepdream.audio.probe(path)
    db = decibels(Spectrogram.for_rate(info.sample_rate).stft(torch.from_numpy(io.read_all(info))).abs().mean(0))
    top = db.max().item() if top is None else top
    return Scale(top).picture(db), top


def measure(
    name: str, src: Path, out: Path, backbone, judge, settings, phase: str, survival: int, figure: Path | None
) -> None:
    """One dream: strength of the dreamed picture, survival in the written file (by the dreaming network and by
    an independent judge), seconds per minute."""
    t, cpu = time.perf_counter(), time.process_time()
    result = deepdream.dream_audio(
        src, out, settings=settings, backbone=backbone, phase=phase, force=True, survival_steps=survival, plot=figure
    )
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert result.seconds <= result.options.chunk_seconds, "one window, so the dreamed picture can be recomputed"
    info = deepdream.audio.probe(src)
    before, top = picture(src)
    after, _ = picture(out, top)
    with deepdream.Dreamer(backbone, deepdream.build_objective(backbone, settings), settings) as dreamer:
        # the picture dream_audio's one window ended with (after its survival steps)
        dreamed, _ = dreaming.dream_spectrogram(
            io.read_all(info),
            dreamer,
            Spectrogram.for_rate(info.sample_rate),
            Scale(top, result.options.dynamic_range),
            result.options,
            0,
        )
        e0, ed, ew = (dreamer.score(p).item() for p in (before, dreamed, after))
    with deepdream.Dreamer(judge, deepdream.build_objective(judge, settings), settings) as other:
        j0, jd, jw = (other.score(p).item() for p in (before, dreamed, after))
    print(
        f"| {name} | {phase} | {survival} | {ed / e0:.2f}x | {ew / e0:.2f}x | {(ew - e0) / (ed - e0):.0%} | "
        f"{jd / j0:.2f}x | {jw / j0:.2f}x | {(jw - j0) / (jd - j0):.0%} | {result.scaled:.2f} | "
        f"{seconds / result.seconds * 60:.0f} | {cpu / result.seconds * 60:.0f} |",
        flush=True,
    )


def memory_child(minutes: float, folder: Path) -> None:
    """In a fresh process: dream a long file cheaply (1 octave x 1 step) and print the peak RSS."""
    src = write_wav(folder / f"long_{minutes}.wav", test_signal(minutes * 60, 16000), 16000)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    deepdream.dream_audio(src, folder / f"long_{minutes}.flac", octaves=1, iterations=1, seed=0, force=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"| {minutes:g} min | {src.stat().st_size / 2**20:.0f} MB | {peak / 2**20:.2f} GB | "
        f"{(peak - base) / 2**20:.2f} GB | {time.perf_counter() - t:.0f} |",
        flush=True,
    )


def test_song(seconds: float, rate: int) -> np.ndarray:
    """Kicks every 0.5 s and a two-note melody, quiet - loud - quiet - loud, then fading out: 1 x n."""
    t = np.arange(round(seconds * rate)) / rate
    kick = np.exp(-(t % 0.5) * 25) * np.sin(2 * np.pi * 70 * t)
    melody = np.sin(2 * np.pi * np.where((t % 1) < 0.5, 330, 440) * t)
    sections = np.interp(t, [0, 2, 2.5, 5, 5.5, 7, 7.5, 10, seconds], [0.1, 0.1, 1, 1, 0.15, 0.15, 1, 1, 0])
    return (sections * (0.5 * kick + 0.2 * melody))[None].astype(np.float32)


def sync(folder: Path, seconds: float = 12.0, fps: float = 12) -> None:
    """Music zoom on a generated song: correlation of the per-frame change with the song's RMS per frame."""
    import av

    from deepdream.audio import music

    song = write_wav(folder / "song.wav", test_song(seconds, 22050), 22050)
    settings = deepdream.Settings(init="noise", size=(160, 120), octaves=2, iterations=5, seed=0)
    t = time.perf_counter()
    result = music.music_zoom(None, folder / "zoom.mp4", settings, song=song, fps=fps, force=True)
    elapsed = time.perf_counter() - t
    with av.open(str(result.path)) as box:
        frames = np.stack([f.to_ndarray(format="rgb24").astype(np.float32) for f in box.decode(video=0)])
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # frame i - 1 -> i, for i >= 1
    env = music.envelope(song, fps)
    plan = music.music_schedule(env)
    r_rms = np.corrcoef(change, env.rms[1:])[0, 1]
    r_drive = np.corrcoef(change, plan.loudness[1:])[0, 1]
    print(
        f"music zoom: {seconds:g} s song at {fps:g} fps -> {result.frames} frames ({result.frames / fps:.2f} s), "
        f"{settings.size[0]}x{settings.size[1]}, {settings.octaves} octaves x {settings.iterations} steps, "
        f"{elapsed:.0f} s"
    )
    print(
        f"correlation of per-frame change with the RMS envelope: {r_rms:.2f}; with the drive (RMS + onsets): "
        f"{r_drive:.2f}"
    )


def _planar_read(path: Path) -> np.ndarray:
    """The reading before the 8-channel fix (planar 'fltp'): the baseline for `decode`. Segfaults at 8 channels."""
    import av

    with av.open(str(path)) as box:
        stream = box.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
        return np.concatenate([o.to_ndarray() for f in box.decode(stream) for o in resampler.resample(f)], axis=1)


def decode(folder: Path, seconds: float = 60.0, rate: int = 44100) -> None:
    """Decoding speed of `io.read_all` (interleaved) against the planar reading it replaced, best of 3 each."""
    print(f"| file ({seconds:g} s, {rate} Hz FLAC) | reading | wall s | CPU s |\n|---|---|---|---|")
    for channels in (2, 8):
        x = (np.random.default_rng(0).standard_normal((channels, round(seconds * rate))) * 0.1).astype(np.float32)
        path = folder / f"decode{channels}.flac"
        info = io.AudioInfo(path, rate, channels, "stereo" if channels == 2 else f"{channels} channels", "flac", None)
        io.write_audio(path, [x[:, i:i + io.BLOCK] for i in range(0, x.shape[1], io.BLOCK)], info,
                       io.OUTPUT_FORMATS[".flac"], "{}")  # fmt: skip
        readers = [("interleaved (io.read_all)", lambda: io.read_all(io.probe(path)))]
        if channels < 8:  # the planar reading segfaults at 8 channels (the bug)
            readers.insert(0, ("planar (before)", lambda: _planar_read(path)))
        for name, read in readers:
            best = (float("inf"), 0.0)
            for _ in range(3):
                wall, cpu = time.perf_counter(), time.process_time()
                read()
                best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
            print(f"| {channels} channels | {name} | {best[0]:.3f} | {best[1]:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the test signal")
    parser.add_argument("--rate", type=int, default=22050)
    parser.add_argument("--figure", type=Path, help="before/after figure of the voice (PNG)")
    parser.add_argument("--memory", help="comma-separated minutes: peak RSS per duration instead")
    parser.add_argument("--inputs", default="signal,voice", help="signal, voice or both")
    parser.add_argument("--judge", default="efficientnet_lite1", help="independent network for the survival check")
    parser.add_argument("--sync", action="store_true", help="measure the music-reactive zoom instead")
    parser.add_argument("--decode", action="store_true", help="measure decoding speed (2 and 8 channels) instead")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.child is not None:
            return memory_child(args.child, folder)
        if args.sync:
            return sync(folder)
        if args.decode:
            return decode(folder)
        if args.memory:
            print("| duration | input WAV | peak RSS | above imports | seconds |\n|---|---|---|---|---|")
            for minutes in args.memory.split(","):
                subprocess.run([sys.executable, __file__, "--child", minutes], check=True)
            return
        backbone = dreaming.grey(deepdream.load_backbone())
        judge = dreaming.grey(deepdream.load_backbone(args.judge))
        settings = deepdream.Settings(**{**dreaming.AUDIO_DEFAULTS, "seed": 0})
        print(
            f"# default audio settings: {backbone.name} {settings.octaves} octaves x {settings.steps} steps, "
            f"smoothing {settings.smoothing}, {torch.get_num_threads()} threads; judge {judge.name} "
            f"{settings.layers or 'default layer'}"
        )
        print(
            "| input | phase | survival steps | dreamed / input | written / input | gain kept | judge: dreamed "
            "| judge: written | judge: kept | output scaled | s per min | CPU s per min |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            flush=True,
        )
        inputs = []
        if "signal" in args.inputs:
            signal = write_wav(folder / "signal.wav", test_signal(args.seconds, args.rate), args.rate)
            inputs.append(("test signal", signal))
        voice = espeak_voice(folder / "voice.wav") if "voice" in args.inputs else None
        if voice is None and "voice" in args.inputs:
            print("(espeak-ng not installed: no voice; apt-get install -y espeak-ng)")
        elif voice is not None:
            inputs.append(("espeak-ng voice", voice))
        default = dreaming.AudioOptions().survival_steps
        for name, src in inputs:
            for phase in ("original", "griffinlim"):
                for survival in (0, default):
                    figure = args.figure if (src is voice and phase == "original" and survival) else None
                    measure(
                        name,
                        src,
                        folder / f"{src.stem}_{phase}_{survival}.flac",
                        backbone,
                        judge,
                        settings,
                        phase,
                        survival,
                        figure,
                    )


if __name__ == "__main__":
    main()
