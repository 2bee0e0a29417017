"""`dream_audio()`: a sound file dreamed as its spectrogram, window by window, and written back.

Three streamed passes keep memory flat whatever the duration: a scan (length, loudest bin, silence,
truncation), the dream (overlapping windows cross-faded into a float32 scratch file beside the output),
and the encoding (scaled down only if the dream would clip).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import imagefiles, locks
from ..engine.ascent import ascend
from ..engine.octaves import Dreamer, resize
from ..engine.tiling import available_memory
from ..errors import ImageError, OutputError, SettingsError
from ..models.backbone import Backbone
from ..models.load import backbone_from_settings
from ..runtime import Progress, draw_seed, reporting
from ..settings import Settings, from_mapping
from . import io
from .plot import before_after
from .spectro import EPS, PHASES, Scale, Spectrogram, decibels

# a file whose loudest sample is below -80 dBFS is silence: nothing for the network to see
SILENCE = 1e-4
# bounds of the options that set how much work there is: beyond them a run would not end in useful time
MAX_STEPS = 1000  # survival steps and Griffin-Lim iterations (defaults 10 and 32)
MIN_CHUNK, MAX_CHUNK = 0.1, 600.0  # seconds per window (default 10)
MIN_OVERLAP = 0.01  # seconds: a cross-fade of a few samples would click


@dataclass(frozen=True)
class AudioOptions:
    """How sound becomes a picture and back; saved with the settings in every output."""

    phase: str = "original"  # a key of spectro.PHASES
    griffin_lim_iterations: int = 32
    chunk_seconds: float = 10.0  # window length: memory per window is fixed, whatever the file's duration
    overlap_seconds: float = 1.0  # cross-faded between neighbouring windows
    dynamic_range: float = 80.0  # decibels below the loudest bin that the picture shows
    # last ascent steps taken on the sound as it will be written: the network sees the resynthesis re-analysed
    # (docs/audio.md: the voice kept 52% of the dream's gain in the file without them)
    survival_steps: int = 10

    def __post_init__(self) -> None:
        if not (isinstance(self.phase, str) and self.phase in PHASES):
            raise SettingsError(f"unknown phase '{self.phase}' (choose from {', '.join(PHASES)})")
        if not _whole(self.griffin_lim_iterations, 1, MAX_STEPS):
            raise SettingsError(f"Griffin-Lim iterations must be 1-{MAX_STEPS}, got {self.griffin_lim_iterations}")
        if not _whole(self.survival_steps, 0, MAX_STEPS):
            raise SettingsError(f"survival steps must be 0-{MAX_STEPS}, got {self.survival_steps}")
        if not (_number(self.chunk_seconds) and MIN_CHUNK <= self.chunk_seconds <= MAX_CHUNK):
            raise SettingsError(f"chunk must be {MIN_CHUNK:g}-{MAX_CHUNK:g} seconds, got {self.chunk_seconds}")
        if not (_number(self.overlap_seconds) and MIN_OVERLAP <= self.overlap_seconds <= self.chunk_seconds / 2):
            raise SettingsError(f"overlap must be {MIN_OVERLAP:g} s to half the chunk ({self.chunk_seconds / 2:g} s), "
                                f"got {self.overlap_seconds}")  # fmt: skip
        if not (_number(self.dynamic_range) and 10 <= self.dynamic_range <= 200):
            raise SettingsError(f"dynamic range must be 10-200 dB, got {self.dynamic_range}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# finer gradient detail than ~2 STFT cells does not survive resynthesis (docs/audio.md: survival 0.61 -> 0.79)
AUDIO_DEFAULTS = {"smoothing": 2.0}
AUDIO_FIELDS = frozenset(f.name for f in dataclasses.fields(AudioOptions))


@dataclass(frozen=True)
class Scan:
    """The first pass over the input: its exact length and loudness."""

    samples: int
    peak: float
    top_db: float


@dataclass(frozen=True)
class AudioResult:
    path: Path
    sample_rate: int
    channels: int
    samples: int
    scaled: float  # 1.0, or the factor that kept the dream from clipping
    settings: Settings
    options: AudioOptions

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate


def crossfade(n: int, overlap: int, fade_in: bool, fade_out: bool) -> np.ndarray:
    """Weights of one window: sin^2 in, cos^2 out over `overlap` samples, so neighbours sum to exactly 1."""
    w = np.ones(n, np.float32)
    ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap).astype(np.float32) ** 2
    if fade_in:  # a window that follows another is longer than the overlap
        w[:overlap] *= ramp
    if fade_out:  # a window that another follows is full length, at least twice the overlap
        w[n - overlap :] *= ramp[::-1]
    return w


class GreyBackbone(Backbone):
    """The network fed the grey mean of its input: a spectrogram has one value per bin, so the dream must
    not put anything into colour (it would be lost in resynthesis; survival rose from 0.24 to 0.61)."""

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return super().normalize(image.mean(1, keepdim=True).expand_as(image))


def grey(backbone: Backbone) -> GreyBackbone:
    """The same network (not a copy) behind a grey input."""
    if isinstance(backbone, GreyBackbone):
        return backbone
    return GreyBackbone(**{f.name: getattr(backbone, f.name) for f in dataclasses.fields(backbone)})


def window_lengths(rate: int, options: AudioOptions) -> tuple[int, int]:
    return round(options.chunk_seconds * rate), round(options.overlap_seconds * rate)


def scan(info: io.AudioInfo, geometry: Spectrogram, options: AudioOptions) -> Scan:
    """Decode everything once: the length, the peak, the loudest STFT bin; refuse silence and truncation."""
    samples, peak, top = 0, 0.0, -math.inf
    for start, x in io.windows(io.read_blocks(info), *window_lengths(info.sample_rate, options)):
        samples = start + x.shape[1]
        peak = max(peak, float(np.abs(x).max()))
        top = max(top, decibels(geometry.stft(torch.from_numpy(x)).abs().mean(0)).max().item())
    io.check_length(info, samples)
    if not math.isfinite(peak):
        raise ImageError(f"{info.path} holds samples that are not finite numbers")
    if peak < SILENCE:
        level = f"peak {20 * math.log10(peak):.0f} dBFS" if peak > 0 else "every sample is zero"
        raise ImageError(f"{info.path} is silent ({level}): nothing to dream")
    return Scan(samples, peak, top)


def check_resources(
    info: io.AudioInfo, samples: int, output: Path, options: AudioOptions, geometry: Spectrogram
) -> None:
    """Refuse up front what cannot finish: the scratch file and the output must fit on the output's disk (they
    grow with the duration), and one window (which does not) must fit in memory."""
    fmt = io.output_format(output)
    disk = samples * info.channels * (4 + fmt.bytes_per_sample) + (1 << 20)
    parent = output.parent if str(output.parent) else Path(".")
    free = shutil.disk_usage(parent).free
    if disk > free:
        raise OutputError(
            f"{samples / info.sample_rate / 3600:.1f} h of audio needs {disk / 2**30:.1f} GB free "
            f"in {parent} for the scratch and output files; {free / 2**30:.1f} GB is free"
        )
    length, _ = window_lengths(info.sample_rate, options)
    cells = geometry.bins * geometry.columns(length)
    # complex spectra of every channel (x8 for Griffin-Lim's copies), the picture's dream, and the network
    need = cells * (8 * info.channels * 8 + 3 * 4 * 16) + (512 << 20)
    have = available_memory()
    if need > have:
        raise OutputError(
            f"not enough memory for one {options.chunk_seconds:g} s window: needs "
            f"{need / 2**30:.1f} GB, {have / 2**30:.1f} GB available (try a smaller --chunk-seconds)"
        )


def split_overrides(overrides: dict) -> tuple[dict, dict]:
    """Keyword overrides split into Settings fields and AudioOptions fields."""
    audio = {k: v for k, v in overrides.items() if k in AUDIO_FIELDS}
    return {k: v for k, v in overrides.items() if k not in AUDIO_FIELDS}, audio


def metadata(settings: Settings, options: AudioOptions) -> str:
    return json.dumps({"deepdream": settings.to_dict(), "audio": options.to_dict()}, sort_keys=True)


def dream_audio(
    source: str | Path,
    output: str | Path,
    *,
    settings: Settings | None = None,
    options: AudioOptions | None = None,
    backbone: Backbone | None = None,
    force: bool = False,
    progress: bool | Progress = False,
    plot: str | Path | None = None,
    **overrides,
) -> AudioResult:
    """Dream a sound file (or a video's soundtrack) into `output` (.wav/.flac/.ogg/.mp3); returns what was written.

    Keyword overrides may name Settings fields (`layers="blocks.3"`) or AudioOptions fields (`phase="griffinlim"`).
    `progress` is True for a bar or any object with `update`/`set_description` (its `total`, if it has one, is
    set to the number of steps).
    The output has the input's sample rate, channels and length, and carries both in its tags. `plot` names a
    PNG for the before/after spectrogram figure."""
    dream_values, audio_values = split_overrides(overrides)
    base = settings.to_dict() if settings is not None else {**Settings().to_dict(), **AUDIO_DEFAULTS}
    settings = from_mapping({**base, **dream_values})
    options = AudioOptions(**{**(options or AudioOptions()).to_dict(), **audio_values})
    if settings.init != "image":
        raise SettingsError("an audio dream starts from the sound: init must be 'image'")
    if settings.seed is None:
        settings = settings.replace(seed=draw_seed())
    info = io.probe(source)
    output, plot = _checked_outputs(source, output, plot, info, force)
    if settings.guide:
        imagefiles.open_image(settings.guide)
    geometry = Spectrogram.for_rate(info.sample_rate)
    found = scan(info, geometry, options)
    check_resources(info, found.samples, output, options, geometry)
    # one run at a time writes an output; checked again once locked, since a run that finished meanwhile has
    # written it and only `force` overwrites
    with locks.hold(*(path for path in (output, plot) if path is not None)):
        output, plot = _checked_outputs(source, output, plot, info, force)
        scale = Scale(found.top_db, options.dynamic_range)
        gain = _dream_file(output, info, found, grey(backbone_from_settings(settings, backbone)), settings, options,
                           geometry, scale, progress)  # fmt: skip
        if plot is not None:
            before_after(info, io.probe(output), scale, found.samples, plot)
    return AudioResult(output, info.sample_rate, info.channels, found.samples, gain, settings, options)


def _checked_outputs(source: str | Path, output: str | Path, plot: str | Path | None, info: io.AudioInfo,
                     force: bool) -> tuple[Path, Path | None]:  # fmt: skip
    """The sound's and the figure's paths, checked: writable, never an input, not one and the same."""
    output = io.check_output(output, info, force=force, inputs=(source,))
    if plot is not None:
        plot = imagefiles.check_output(plot, force=force, inputs=(source, output))
        if plot.resolve() == output.resolve():
            raise OutputError(f"the figure and the sound cannot both be {output}")
    return output, plot


def _dream_file(
    output: Path,
    info: io.AudioInfo,
    found: Scan,
    backbone: Backbone,
    settings: Settings,
    options: AudioOptions,
    geometry: Spectrogram,
    scale: Scale,
    progress: bool | Progress,
) -> float:
    """Dream the whole sound into a scratch file beside `output`, then write `output` from it (atomically);
    returns the gain that kept it from clipping."""
    fd, scratch_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".f32", dir=output.parent or Path("."))
    os.close(fd)
    scratch = Path(scratch_name)
    try:
        mix = np.memmap(scratch, np.float32, "w+", shape=(info.channels, found.samples))
        with Dreamer.from_settings(settings, backbone) as dreamer:
            _dream_into(mix, info, found, dreamer, geometry, scale, options, progress)
        peak = max((float(np.abs(mix[:, i : i + io.BLOCK]).max()) for i in range(0, found.samples, io.BLOCK)))
        gain = 1.0 if peak <= 0.999 else 0.999 / peak
        blocks = (mix[:, i : i + io.BLOCK] * gain for i in range(0, found.samples, io.BLOCK))
        fmt = io.output_format(output)
        text = metadata(settings, options)
        imagefiles.atomic_write(output, lambda tmp: io.write_audio(tmp, blocks, info, fmt, text))
        del mix
    finally:
        scratch.unlink(missing_ok=True)
    return gain


def _dream_into(
    mix: np.ndarray,
    info: io.AudioInfo,
    found: Scan,
    dreamer: Dreamer,
    geometry: Spectrogram,
    scale: Scale,
    options: AudioOptions,
    progress: bool | Progress,
) -> None:
    """Dream every window and overlap-add it, cross-faded, into `mix` (C x samples)."""
    length, overlap = window_lengths(info.sample_rate, options)
    count = 1 + math.ceil(max(0, found.samples - length) / (length - overlap))
    columns = max(geometry.columns(min(length, found.samples)), dreamer.backbone.min_size)
    height, width = _dream_size(geometry.bins, columns, dreamer)
    total = count * (dreamer.steps_per_image(height, width) + options.survival_steps)
    with reporting(progress, total) as bar:
        for k, (start, x) in enumerate(io.windows(io.read_blocks(info), length, overlap)):
            x = x[:, : found.samples - start]
            n = x.shape[1]
            bar.set_description(f"window {k + 1}/{count}")
            y = dream_window(x, dreamer, geometry, scale, options, k, bar)
            mix[:, start : start + n] += y * crossfade(n, overlap, start > 0, start + n < found.samples)


def _dream_size(height: int, width: int, dreamer: Dreamer) -> tuple[int, int]:
    """The picture's size for the network: the long side capped at max_size, as for images."""
    w, h = imagefiles.fit_size(width, height, dreamer.settings.max_size)
    return h, w


@dataclass(frozen=True)
class WindowSound:
    """One window's analysis: what a picture of it sounds like, differentiably in the picture."""

    geometry: Spectrogram
    scale: Scale
    db: torch.Tensor  # F x T: the input's mono levels
    share: torch.Tensor  # C x F x T: each channel's share of the mono magnitude
    phasors: torch.Tensor  # C x F x T unit phasors the sound is resynthesised with
    lit: torch.Tensor  # F x T: bins below the floor that the dream lit up
    length: int

    def magnitudes(self, picture: torch.Tensor) -> torch.Tensor:
        return self.share * 10 ** (self.scale.levels(self.db, picture, self.lit)[0] / 20)

    def sound(self, picture: torch.Tensor) -> torch.Tensor:
        return self.geometry.istft(self.magnitudes(picture) * self.phasors, self.length)

    def heard(self, picture: torch.Tensor) -> torch.Tensor:
        """The picture of the resynthesised sound, analysed again: what the written file holds."""
        return self.scale.picture(decibels(self.geometry.stft(self.sound(picture)).abs().mean(0)))


def dream_window(
    x: np.ndarray,
    dreamer: Dreamer,
    geometry: Spectrogram,
    scale: Scale,
    options: AudioOptions,
    index: int,
    progress: Progress | None = None,
) -> np.ndarray:
    """One window (C x n samples) dreamed through its spectrogram and resynthesised (C x n)."""
    picture, sound = dream_spectrogram(x, dreamer, geometry, scale, options, index, progress)
    return sound.sound(picture)[:, : x.shape[1]].numpy()


def dream_spectrogram(
    x: np.ndarray,
    dreamer: Dreamer,
    geometry: Spectrogram,
    scale: Scale,
    options: AudioOptions,
    index: int,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, WindowSound]:
    """One window (C x n samples) -> (its dreamed picture, how that picture sounds)."""
    n = x.shape[1]
    # pad with silence up to the network's smallest input (a window shorter than min_size columns)
    pad = max(0, (dreamer.backbone.min_size - 1) * geometry.hop - n)
    spec = geometry.stft(torch.from_numpy(np.pad(x, ((0, 0), (0, pad)))))  # C x F x T
    magnitude = spec.abs()
    db = decibels(magnitude.mean(0))  # F x T: one picture for all channels keeps the stereo image
    picture = scale.picture(db)  # 1 x 3 x F x T
    seed = dreamer.settings.seed + index
    dreamed = dream_picture(dreamer, picture, seed, progress)
    lit = scale.levels(db, dreamed)[1]
    mono = magnitude.mean(0)
    # each channel keeps its share of the mono level; bins that were silent in every channel get it evenly
    share = torch.where(mono > EPS, magnitude / mono.clamp_min(EPS), torch.ones_like(magnitude))
    # a bin lit up from silence has no phase of its own: a random one, as Griffin-Lim would start from
    noise = torch.rand(spec.shape, generator=torch.Generator().manual_seed(seed)) * (2 * math.pi)
    phasors = torch.polar(torch.ones_like(magnitude), torch.where(lit, noise, spec.angle()))
    sound = WindowSound(geometry, scale, db, share, phasors, lit, n + pad)
    phasors = PHASES[options.phase](
        phasors, sound.magnitudes(dreamed), geometry, n + pad, options.griffin_lim_iterations
    )
    sound = dataclasses.replace(sound, phasors=phasors)
    return survive(dreamer, sound, dreamed, options.survival_steps, seed, progress), sound


def survive(
    dreamer: Dreamer, sound: WindowSound, picture: torch.Tensor, steps: int, seed: int, progress: Progress | None = None
) -> torch.Tensor:
    """`steps` more ascent steps on the picture, scored on what the written file will hold (`sound.heard`).

    A change finer than the STFT's overlap, or one the kept phase contradicts, is smeared away when the
    sound is analysed again; scoring the re-analysed picture makes the dream put its gain where it lasts.
    The network's gradient comes from the dreamer (tiled, at the capped size) and is carried back through
    the resynthesis by autograd."""
    if steps == 0:
        return picture
    size = _dream_size(*picture.shape[-2:], dreamer)
    network = dreamer.gradient_fn(*size, seed + 1)

    def grad(p: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
        p = p.detach().requires_grad_(True)
        heard = resize(sound.heard(p), size)
        (g,) = torch.autograd.grad(heard, p, network(heard.detach(), shift))
        return g

    s = dreamer.settings
    return ascend(
        picture,
        grad,
        steps=steps,
        step_size=s.step_size,
        optimizer=s.optimizer,
        blur=dreamer.smooth,
        on_step=progress.update if progress is not None else None,
    )


def dream_picture(dreamer: Dreamer, picture: torch.Tensor, seed: int, progress: Progress | None = None) -> torch.Tensor:
    """Dream a spectrogram picture at the capped size; what the dream added is scaled back to full size."""
    size = _dream_size(*picture.shape[-2:], dreamer)
    small = resize(picture, size)
    dreamed = dreamer.dream(small, torch.Generator().manual_seed(seed), progress).cpu()
    if size == tuple(picture.shape[-2:]):
        return dreamed
    return (picture + resize(dreamed - small, picture.shape[-2:])).clamp(0, 1)
