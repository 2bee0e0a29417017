"""A song as per-video-frame drivers: loudness envelope and onsets, turned into zoom and dream-strength
schedules for `dream_zoom` (`deepdream zoom --audio SONG`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ImageError, SettingsError
from ..settings import Settings
from ..video import VideoResult, dream_zoom
from . import io
from .spectro import Spectrogram, decibels


@dataclass(frozen=True)
class Envelope:
    """Per video frame: RMS loudness, and onset strength (positive spectral flux), both over the song."""

    rms: np.ndarray
    onsets: np.ndarray
    seconds: float
    fps: float

    @property
    def frames(self) -> int:
        return len(self.rms)


def envelope(path: str | Path, fps: float) -> Envelope:
    """Stream the song once: RMS per video frame, and the largest spectral flux (the mean rise in decibels
    from one STFT column to the next) inside each frame. Memory grows with the number of frames only."""
    info = io.probe(path)
    geometry = Spectrogram.for_rate(info.sample_rate)
    per_frame = info.sample_rate / fps
    energy, counts, flux, times = np.zeros(0), np.zeros(0), [], []
    tail = np.zeros(0, np.float32)  # samples not yet covered by a whole STFT column
    previous: torch.Tensor | None = None
    samples = 0
    for start, x in io.windows(io.read_blocks(info), 1 << 16):
        mono = x.mean(axis=0)
        index = ((start + np.arange(mono.size)) / per_frame).astype(np.int64)
        size = index[-1] + 1
        energy, counts = np.pad(energy, (0, size - energy.size)), np.pad(counts, (0, size - counts.size))
        np.add.at(energy, index, mono.astype(np.float64) ** 2)
        np.add.at(counts, index, 1)
        signal = np.concatenate([tail, mono])
        if signal.size >= geometry.n_fft:
            cols = torch.stft(
                torch.from_numpy(signal),
                geometry.n_fft,
                geometry.hop,
                center=False,
                window=torch.hann_window(geometry.n_fft),
                return_complex=True,
            ).abs()
            db = decibels(cols)  # F x T, columns every hop from the first sample of `signal`
            first = start - tail.size
            # a rise in decibels shows as soon as a sound enters the window: date each column by its leading edge
            times.extend(first + geometry.n_fft + geometry.hop * np.arange(db.shape[1]))
            rows = db if previous is None else torch.cat([previous, db], dim=1)
            rises = (rows[:, 1:] - rows[:, :-1]).clamp_min(0).mean(0).tolist()
            flux.extend(([0.0] if previous is None else []) + rises)
            previous = db[:, -1:]
            tail = signal[db.shape[1] * geometry.hop :]
        else:
            tail = signal
        samples = start + mono.size
    io.check_length(info, samples)  # a truncated song is refused as `deepdream audio` refuses it
    frames = max(1, math.ceil(samples / per_frame - 1e-9))
    rms = np.sqrt(energy[:frames] / np.maximum(counts[:frames], 1))
    if not np.isfinite(rms).all():
        raise ImageError(f"{path} holds samples that are not finite numbers")
    if rms.max() < 1e-4:
        raise ImageError(f"{path} is silent: nothing for the zoom to follow")
    onsets = np.zeros(frames)
    if flux:
        np.maximum.at(onsets, (np.asarray(times) / per_frame).astype(np.int64).clip(0, frames - 1), np.asarray(flux))
    return Envelope(rms, onsets, samples / info.sample_rate, fps)


def _unit(values: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1] by the 5th and 95th percentiles, so a few peaks do not flatten the rest."""
    lo, hi = np.percentile(values, [5, 95])
    return np.clip((values - lo) / max(hi - lo, 1e-9), 0, 1)


@dataclass(frozen=True)
class MusicSchedule:
    """Per-frame zoom factors and dream strengths that follow a song, and how many frames it lasts."""

    frames: int
    zoom: list[float]
    strength: list[float]
    loudness: np.ndarray  # the [0, 1] drive, for measurements


def music_schedule(
    env: Envelope, *, zoom: float = 1.04, strength: tuple[float, float] = (0.3, 1.5), onset_kick: float = 0.5
) -> MusicSchedule:
    """Loud frames zoom faster and dream harder, onsets add a kick; quiet ones nearly hold still.

    drive = max(loudness, onset_kick * onsets), each in [0, 1]; zoom_i = 1 + (zoom - 1) * 2 * drive_i (the
    mean speed of a song at half loudness is `zoom`); strength_i runs from strength[0] to strength[1]."""
    if not (math.isfinite(zoom) and zoom > 0):
        raise SettingsError(f"zoom must be a positive number, got {zoom}")
    low, high = strength
    if not (0 < low <= high):
        raise SettingsError(f"strength range must be 0 < low <= high, got {low}, {high}")
    drive = np.maximum(_unit(env.rms), onset_kick * _unit(env.onsets))
    zooms = (1 + (zoom - 1) * 2 * drive).tolist()
    strengths = (low + (high - low) * drive).tolist()
    return MusicSchedule(env.frames, zooms, strengths, drive)


def music_zoom(
    source: str | Path | None,
    output: str | Path,
    settings: Settings | None = None,
    *,
    song: str | Path,
    zoom: float = 1.04,
    strength: tuple[float, float] = (0.3, 1.5),
    fps: float = 24,
    **options,
) -> VideoResult:
    """`dream_zoom` driven by a song: one frame per 1/fps s of it, zoom speed and dream strength following its
    loudness and onsets, the song muxed in; the video ends with the song. `options` go to `dream_zoom`
    (rotate, translate, work_dir, resume, force, backbone, progress...)."""
    plan = music_schedule(envelope(song, fps), zoom=zoom, strength=strength)
    return dream_zoom(
        source,
        output,
        settings,
        frames=plan.frames,
        zoom=plan.zoom,
        strength=plan.strength,
        fps=fps,
        soundtrack=song,
        **options,
    )
