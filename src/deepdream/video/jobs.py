"""The two video jobs, `dream_video` and `dream_zoom`, over one frame loop with a resumable work folder.

One network load and one seed dream every frame. A job describes itself (input, size, options,
settings) in the work folder's manifest, then dreams, in order, the frames the folder lacks: each
frame is made from its item (an input frame, or nothing for a zoom) and the previous frame's dream.
The video file is written, atomically, only once every frame exists. `frame_loop` is the loop itself,
shared with `live.dream_live`, and `video_frame` the frame function of video and live.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import cv2
import numpy as np
import torch

from .. import imagefiles
from ..engine.octaves import Dreamer, noise_image, octave_plan, resize
from ..errors import ImageError, OutputError, SettingsError, VideoError
from ..locks import Locks
from ..models.backbone import Backbone
from ..runtime import draw_seed, progress_bar
from ..settings import Settings
from .cache import FrameCache, default_work_dir
from .coherence import Coherence, coherence
from .reading import even_size, format_seconds, probe, read_frames
from .writing import check_video_output, write_video

T = TypeVar("T")
FrameHook = Callable[[int], None]
# a per-frame value: one for every frame, a sequence indexed by frame, or a function of the frame index
Schedule = float | Sequence[float] | Callable[[int], float]


@dataclass(frozen=True)
class VideoResult:
    """What a video job produced."""

    path: Path
    frames: int  # frames in the output
    dreamed: int  # frames dreamed by this run; the others came from the work folder
    fps: Fraction
    size: tuple[int, int]  # width, height
    audio: str  # what happened to the input's audio
    seconds: float  # wall time spent dreaming in this run
    work_dir: Path | None  # where the frames stay, None once removed
    steps: tuple[int, ...] = ()  # ascent steps each frame dreamed by this run took

    @property
    def steps_per_frame(self) -> float:
        return sum(self.steps) / len(self.steps) if self.steps else 0.0


class StepCount:
    """A progress object that only counts ascent steps (Dreamer.dream reports one update per step)."""

    def __init__(self) -> None:
        self.steps = 0

    def update(self, n: int = 1) -> None:
        self.steps += n

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass


# (y0, y1, x0, x1): a rectangle of a frame
Box = tuple[int, int, int, int]


class FrameDreamer:
    """Dreams frames with one loaded network, one objective and one seed (the same jitter every frame).

    `dream(image, strength)` scales the step size: a frame that starts from the carried dream of the
    previous ones needs only part of a full dream on top (see `FlowCoherence.refresh`). `steps` and
    `octaves` dream with fewer ascent steps on the finest octaves only (a warm start, see
    `SteadyCoherence`); `region` dreams one rectangle of the frame with the whole frame's steps per
    octave. Each distinct (strength, steps, octaves) gets its own Dreamer (a folded copy of the network,
    its hooks and blur kernel), kept for the next frames; the few most recent are kept. `steps` counts
    the ascent steps taken so far.
    """

    KEEP_DREAMERS = 4

    def __init__(self, settings: Settings, backbone: Backbone | None = None):
        full = Dreamer.from_settings(settings, backbone)  # the network, guide and objective every frame shares
        self.backbone, self.objective, self.settings = full.backbone, full.objective, settings
        self._dreamers: dict[tuple, Dreamer] = {(1.0, None, None): full}  # (strength, iterations, octaves) -> Dreamer
        self._mask: torch.Tensor | None = None  # settings.mask at the frame size, loaded with the first frame
        self.count = StepCount()

    @property
    def steps(self) -> int:
        """Ascent steps taken by every dream so far."""
        return self.count.steps

    @property
    def min_size(self) -> int:
        return self.backbone.min_size

    def full_steps(self, height: int, width: int) -> int:
        """Ascent steps of a full dream of a frame this size (all octaves)."""
        return octave_plan(self.settings, height, width, self.min_size).total

    def mask(self, height: int, width: int) -> torch.Tensor | None:
        """settings.mask (1 x 1 x H x W in [0, 1]) at this frame size, or None without one."""
        if self.settings.mask is None:
            return None
        if self._mask is None or tuple(self._mask.shape[-2:]) != (height, width):
            self._mask = imagefiles.load_mask(self.settings.mask, (height, width))
        return self._mask

    def keep(self, frame: np.ndarray, dreamed: np.ndarray) -> np.ndarray:
        """The frame where the mask is black, exactly, and the dream where it is white: whatever the coherence
        carried from earlier frames, masked-out pixels are this frame's own."""
        mask = self.mask(*frame.shape[:2])
        if mask is None:
            return dreamed
        m = mask[0, 0].numpy()[..., None]
        return np.rint(frame * (1 - m) + dreamed * m).astype(np.uint8)

    def _dreamer(self, strength: float, iterations: int | None, octaves: int | None) -> Dreamer:
        key = (strength, iterations, octaves)
        if key in self._dreamers:
            self._dreamers[key] = self._dreamers.pop(key)  # most recently used last
            return self._dreamers[key]
        settings = self.settings
        if strength != 1:
            settings = settings.replace(step_size=settings.step_size * strength)
        if iterations is not None:
            settings = settings.replace(iterations=iterations)
        if octaves is not None:
            settings = settings.replace(octaves=min(octaves, settings.octaves))
        while len(self._dreamers) >= self.KEEP_DREAMERS:
            self._dreamers.pop(next(iter(self._dreamers))).close()
        self._dreamers[key] = Dreamer(self.backbone, self.objective, settings)
        return self._dreamers[key]

    def dream(
        self,
        image: np.ndarray,
        strength: float = 1.0,
        *,
        steps: int | None = None,
        octaves: int | None = None,
        region: Box | None = None,
    ) -> np.ndarray:
        """Dream an H x W x 3 image (uint8, or float in [0, 1]); returns uint8. With settings.mask, black
        pixels keep `image` and the dream never spreads into them.

        `steps` ascent steps on each of the finest `octaves` octaves (default: the settings' full dream).
        `region`: dream only that rectangle of `image`, as the whole frame would be dreamed there (its
        steps per octave; octaves that fall below the network's minimum are dropped), and return it.
        """
        height, width = image.shape[:2]
        if region is not None and steps is None:
            steps = octave_plan(self.settings, height, width, self.min_size).steps  # the whole frame's
        dreamer = self._dreamer(strength, steps, octaves)
        generator = torch.Generator().manual_seed(self.settings.seed if self.settings.seed is not None else 0)
        mask = self.mask(height, width)
        if region is not None:
            y0, y1, x0, x1 = region
            image = image[y0:y1, x0:x1]
            mask = mask[..., y0:y1, x0:x1] if mask is not None else None
        return imagefiles.to_uint8(dreamer.dream(imagefiles.from_uint8(image), generator, self.count, mask=mask))

    def close(self) -> None:
        while self._dreamers:
            self._dreamers.popitem()[1].close()

    def __enter__(self) -> "FrameDreamer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- the frame loop

# (dreamer, frame index, the loop's item for it, the previous frame's dream or None) -> this frame's dream
MakeFrame = Callable[[FrameDreamer, int, T, "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class JobOptions:
    """Where a job keeps its frames and writes its output, and how it reports: shared by video and zoom."""

    output: Path
    work_dir: Path | None = None  # a folder the user named (kept); None: OUTPUT.frames, removed when done
    resume: bool = False
    force: bool = False
    keep_frames: bool = False
    progress: bool = False
    on_frame: FrameHook | None = None

    @property
    def folder(self) -> Path:
        return self.work_dir if self.work_dir is not None else default_work_dir(self.output)

    @property
    def keeps_folder(self) -> bool:
        return self.work_dir is not None or self.keep_frames


def _seeded(settings: Settings, options: JobOptions) -> Settings:
    """A fixed seed for every frame; on resume without --seed, the seed of the frames already made."""
    if settings.seed is not None:
        return settings
    cache = FrameCache(options.folder, {})
    old = cache.manifest() if options.resume and cache.count() else None
    seed = (old or {}).get("settings", {}).get("seed")
    return settings.replace(seed=seed if isinstance(seed, int) else draw_seed())


@contextlib.contextmanager
def _released_on_error(held: Locks):
    """Release the job's locks if the block fails (on success they stay held until _finish)."""
    try:
        yield
    except BaseException:
        held.release()
        raise


@contextlib.contextmanager
def _cleanup_if_empty(cache: FrameCache, default_folder: bool):
    """On any failure before the first frame is saved, remove the default work folder again."""
    try:
        yield
    except BaseException:
        if default_folder and cache.count() == 0:
            cache.remove()
        raise


@dataclass
class FrameRun:
    """What the frame loop did: frames seen, frames dreamed by this run, seconds it spent."""

    cache: FrameCache
    count: int = 0
    dreamed: int = 0
    seconds: float = 0.0
    steps: list[int] = field(default_factory=list)  # ascent steps of each frame this run dreamed
    held: Locks | None = None  # the job's locks on its folder and output, released by _finish


@dataclass(frozen=True)
class Dreamed:
    """One frame out of `frame_loop`: its index, its dream (None: done before) and the ascent steps it took."""

    index: int
    dream: np.ndarray | None
    steps: int = 0


def frame_loop(
    dreamer: FrameDreamer,
    items: Iterable[T],
    make: MakeFrame,
    *,
    done: Callable[[int], bool] | None = None,
    load: Callable[[int], np.ndarray] | None = None,
) -> Iterator[Dreamed]:
    """The one frame loop of video, zoom and live: each item's frame made from it and the previous dream.

    `done(i)`: frame i exists already (a resumed job); it is skipped, and the previous dream is read back
    with `load(i - 1)` only when the next frame needs it, so a resumed job continues exactly where the
    interrupted one stopped.
    """
    prev = None  # the previous frame's dream (uint8)
    for index, item in enumerate(items):
        if done is not None and done(index):
            prev = None  # finished: read back only if the next frame needs it
            yield Dreamed(index, None)
            continue
        if prev is None and index > 0 and load is not None:
            prev = load(index - 1)
        before = dreamer.steps
        prev = make(dreamer, index, item, prev)
        yield Dreamed(index, prev, dreamer.steps - before)


def dream_frames(
    job: dict,
    settings: Settings,
    backbone: Backbone | None,
    items: Iterable[T],
    make: MakeFrame,
    options: JobOptions,
    *,
    total: int | None,
    desc: str,
    empty: Callable[[], Exception] | None = None,
) -> FrameRun:
    """A job's frames through `frame_loop`: dream, in order, each item's frame that the work folder lacks,
    and save it there."""
    cache = FrameCache(options.folder, job)
    held = cache.hold(options.output)
    with _released_on_error(held):
        if options.output.exists() and not options.force:  # written by a job that finished meanwhile
            raise OutputError(f"{options.output} exists (use --force to overwrite)")
        cache.prepare(resume=options.resume, force=options.force)
    run = FrameRun(cache, held=held)
    with (
        _released_on_error(held),
        _cleanup_if_empty(cache, options.work_dir is None),
        FrameDreamer(settings, backbone) as dreamer,
        progress_bar(total, desc, "frame", enabled=options.progress) as bar,
    ):
        began = time.perf_counter()
        for frame in frame_loop(dreamer, items, make, done=cache.has, load=cache.load):
            run.count = frame.index + 1
            if frame.dream is not None:
                cache.save(frame.index, frame.dream)
                run.dreamed += 1
                run.steps.append(frame.steps)
                if options.on_frame is not None:
                    options.on_frame(frame.index)
            bar.update(1)
        if run.count == 0 and empty is not None:
            raise empty()
    run.seconds = time.perf_counter() - began
    return run


def _finish(run: FrameRun, options: JobOptions, fps: Fraction, size: tuple[int, int], write) -> VideoResult:
    """Write the video from the work folder (write(frames) -> audio outcome), tidy the folder, unlock."""
    try:
        audio = write(run.cache.frames(run.count))
        if not options.keeps_folder:
            run.cache.remove()
    finally:
        if run.held is not None:
            run.held.release()
    folder = run.cache.folder if options.keeps_folder else None
    return VideoResult(options.output, run.count, run.dreamed, fps, size, audio, run.seconds, folder, tuple(run.steps))


def _file_id(path: Path) -> dict:
    return {"path": str(path.resolve()), "bytes": path.stat().st_size}


# ---------------------------------------------------------------------------------------------- video


def video_frame(follow: Coherence) -> MakeFrame:
    """How a video (or live) frame is made: item (frame, the frame before it or None) and the previous dream
    -> this frame's dream, coherent by `follow`, masked pixels kept."""

    def make(dreamer: FrameDreamer, index: int, item, prev_dream: np.ndarray | None) -> np.ndarray:
        frame, prev_frame = item
        return dreamer.keep(frame, follow.dream_frame(dreamer, frame, prev_frame, prev_dream))

    return make


def with_previous(frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(frame, the frame before it or None) for each frame."""
    prev = None
    for frame in frames:
        yield frame, prev
        prev = frame


def _check_range(start: float, duration: float | None) -> None:
    if start < 0 or not math.isfinite(start):
        raise SettingsError(f"start must be >= 0, got {start}")
    if duration is not None and not (duration > 0 and math.isfinite(duration)):
        raise SettingsError(f"duration must be positive, got {duration}")


# the old names of dream_video's arguments (until the next release): they read like the Settings fields
# `blend` (the octave blend) and `max_size` (a still's cap)
RENAMED = {"blend": "flow_blend", "max_size": "max_side"}


def _renamed(given: dict, flow_blend, max_side) -> tuple:
    """(flow_blend, max_side), taking the old argument names with a DeprecationWarning."""
    unknown = set(given) - set(RENAMED)
    if unknown:
        raise TypeError(f"dream_video() got an unexpected keyword argument '{sorted(unknown)[0]}'")
    for old, new in RENAMED.items():
        if old in given:
            warnings.warn(f"dream_video({old}=...) is now {new}=...", DeprecationWarning, stacklevel=3)
    return given.get("blend", flow_blend), given.get("max_size", max_side)


def dream_video(
    source: str | Path,
    output: str | Path,
    settings: Settings | None = None,
    *,
    flow: str = "dis",
    flow_blend: float | None = None,
    evolve: bool = False,
    warm_start: bool = True,
    start: float = 0.0,
    duration: float | None = None,
    max_side: int | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    keep_frames: bool = False,
    backbone: Backbone | None = None,
    progress: bool = False,
    on_frame: FrameHook | None = None,
    **renamed,
) -> VideoResult:
    """Dream every frame of a video with one network and one seed, coherent along the optical flow.

    `flow` is 'dis', 'farneback' or 'none' (plain per-frame dreaming). By default the dream holds
    still where the scene does and moves with it (`SteadyCoherence`); `evolve` re-dreams every frame
    from its input blended with the previous dream (`FlowCoherence`), so patterns keep changing.
    A steady frame the flow carries gets a few ascent steps on top of the carried dream (`warm_start`);
    without it every frame is dreamed in full, as before (slower, the same look).
    `flow_blend` is how much of the previous frame's warped dream is carried (default 1, or 0.8 with
    `evolve`). The output keeps the input's fps, size (or the long side capped at `max_side`) and
    audio. Frames are cached in `work_dir` (default: next to the output) and, with `resume`, frames
    already there are not dreamed again. The output is written only once every frame is done; the
    default work folder is removed then unless `keep_frames`.
    """
    flow_blend, max_side = _renamed(renamed, flow_blend, max_side)
    settings = settings or Settings()
    if settings.init != "image":
        raise SettingsError("a video is dreamed from its frames; --init noise does not apply (see 'deepdream zoom')")
    _check_range(start, duration)
    follow = coherence(flow, flow_blend, evolve, warm=warm_start)  # checks flow and blend before any work
    source = Path(source)
    info = probe(source)
    if info.duration is not None and start >= info.duration:
        length = format_seconds(info.duration)
        raise VideoError(f"{source} is {length} long; nothing to dream from {format_seconds(start)}")
    output = check_video_output(output, force=force, inputs=(source, *settings.files))
    for picture in (settings.guide, settings.mask):  # unreadable files fail before any work
        if picture:
            imagefiles.open_image(picture)
    size = even_size(info.width, info.height, max_side)
    options = JobOptions(output, Path(work_dir) if work_dir is not None else None, resume, force, keep_frames,
                         progress, on_frame)  # fmt: skip
    settings = _seeded(settings, options)
    job = {
        "kind": "video",
        "input": _file_id(source),
        "start": start,
        "duration": duration,
        "size": size,
        "flow": flow,
        "blend": follow.blend if flow != "none" else 0.0,
        "look": "evolve" if evolve else "steady-warm" if warm_start else "steady",
        "settings": settings.to_dict(),
    }

    make = video_frame(follow)

    def empty() -> Exception:
        end = f" to {format_seconds(start + duration)}" if duration is not None else ""
        return VideoError(f"{source} has no video frames from {format_seconds(start)}{end}")

    spans = [x for x in (duration, info.duration - start if info.duration is not None else None) if x is not None]
    frames = with_previous(read_frames(source, start=start, duration=duration, size=size))
    total = round(min(spans) * float(info.fps)) if spans else None
    run = dream_frames(job, settings, backbone, frames, make, options, total=total, desc="dreaming", empty=empty)

    def write(frames: Iterable[np.ndarray]) -> str:
        return write_video(output, frames, fps=info.fps, audio_from=source, start=start, duration=duration,
                           comment=settings.to_json())  # fmt: skip

    return _finish(run, options, info.fps, size, write)


# ---------------------------------------------------------------------------------------------- zoom


def zoom_transform(size: tuple[int, int], zoom: float, rotate: float, translate: tuple[float, float]) -> np.ndarray:
    """2 x 3 affine matrix: zoom about the centre, rotate `rotate` degrees counter-clockwise, then shift."""
    w, h = size
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rotate, zoom)
    m[:, 2] += translate
    return m


def zoom_step(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply the zoom transform to a frame; reflected borders keep the edges filled with picture."""
    h, w = frame.shape[:2]
    return cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def per_frame(name: str, value, frames: int, check: Callable[[object], bool]) -> list:
    """A schedule as one value per frame: `value` itself (a constant), value[i], or value(i)."""
    if callable(value):
        values = [value(i) for i in range(frames)]
    elif isinstance(value, Sequence) and not _is_constant(value):
        if len(value) < frames:
            raise SettingsError(f"{name} has {len(value)} values for {frames} frames")
        values = list(value[:frames])
    else:
        values = [value] * frames
    bad = next((v for v in values if not check(v)), None)
    if bad is not None:
        raise SettingsError(f"{name} must be {check.__doc__}, got {bad}")
    return values


def _is_constant(value) -> bool:
    """A number, or a (dx, dy) pair of numbers: the same for every frame."""
    return isinstance(value, numbers.Real) or (
        isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, numbers.Real) for v in value)
    )


def _positive(v) -> bool:
    """a positive finite number"""
    return isinstance(v, numbers.Real) and math.isfinite(v) and v > 0


def _finite(v) -> bool:
    """a finite number"""
    return isinstance(v, numbers.Real) and math.isfinite(v)


def _finite_pair(v) -> bool:
    """a pair of finite numbers (DX, DY)"""
    return isinstance(v, Sequence) and len(v) == 2 and all(_finite(x) for x in v)


def _described(**schedules: tuple[object, list]) -> dict:
    """How the manifest records each (schedule, values per frame): the constant as given, or every value."""
    out = {}
    for name, (value, values) in schedules.items():
        if _is_constant(value):
            out[name] = list(value) if isinstance(value, tuple) else value
        else:
            out[name] = [list(v) if isinstance(v, (tuple, list)) else v for v in values]
    return out


def _schedules(frames: int, zoom, rotate, translate, strength) -> tuple[list, list, list, list]:
    """Per-frame zoom, rotation, shift and strength, each checked."""
    if not (isinstance(frames, int) and frames >= 1):
        raise SettingsError(f"frames must be >= 1, got {frames}")
    return (
        per_frame("zoom", zoom, frames, _positive),
        per_frame("rotate", rotate, frames, _finite),
        per_frame("translate", translate, frames, _finite_pair),
        per_frame("strength", strength, frames, _positive),
    )


# a frame zoomed by more than this per step (or shrunk below its inverse) keeps almost nothing of the
# last: no loop; and OpenCV's reflected border walks the whole distance, so far-off sources take hours
ZOOM_LIMIT = 8.0


def _check_transforms(zooms: list, shifts: list, size: tuple[int, int]) -> None:
    """SettingsError for a step that leaves the frame: zoom outside [1/8, 8], a shift beyond the frame."""
    w, h = size
    bad = next((z for z in zooms if not 1 / ZOOM_LIMIT <= z <= ZOOM_LIMIT), None)
    if bad is not None:
        raise SettingsError(f"zoom must be between {1 / ZOOM_LIMIT:g} and {ZOOM_LIMIT:g} per frame, got {bad}")
    bad = next((s for s in shifts if abs(s[0]) > w or abs(s[1]) > h), None)
    if bad is not None:
        raise SettingsError(
            f"translate {bad[0]:g},{bad[1]:g} moves the {w}x{h} frame out of itself; shift at most its size"
        )


def _zoom_start(source, settings: Settings, noise: bool) -> np.ndarray:
    """The first frame before dreaming: the image (capped at max_size, even-sized) or seeded noise."""
    if noise:
        rgb = noise_image(*settings.size, torch.Generator().manual_seed(settings.seed))
    else:
        rgb, _ = imagefiles.load_image(source, settings.max_size)
    size = even_size(rgb.shape[-1], rgb.shape[-2])
    return imagefiles.to_uint8(resize(rgb, size[::-1]))


def dream_zoom(
    source: str | Path | None,
    output: str | Path,
    settings: Settings | None = None,
    *,
    frames: int = 60,
    zoom: Schedule = 1.04,
    rotate: Schedule = 0.0,
    translate: tuple[float, float] | Sequence[tuple[float, float]] | Callable[[int], tuple[float, float]] = (0.0, 0.0),
    strength: Schedule = 1.0,
    fps: float | Fraction = 24,
    soundtrack: str | Path | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    keep_frames: bool = False,
    backbone: Backbone | None = None,
    progress: bool = False,
    on_frame: FrameHook | None = None,
) -> VideoResult:
    """The feedback loop: dream an image, zoom/rotate/shift the dream, dream that, and so on.

    The first frame is the dreamed image (or noise with settings.init == 'noise'); each next frame is
    the previous one transformed and dreamed again with the same seed. `zoom`, `rotate`, `translate`
    and `strength` (a factor on the step size) are each one value, a sequence with a value per frame,
    or a function of the frame index: the transform of value i makes frame i from frame i - 1, so
    music or any other signal can drive the loop. Written as MP4/MOV/MKV/WebM or an endlessly looping
    GIF. With `resume`, frames in the work folder are reused, and asking for more frames than before
    extends a loop whose values are constants. `soundtrack`: a sound (or video) file whose audio is muxed in,
    cut at the last frame (deepdream.audio.music drives the schedules from it).
    """
    settings = settings or Settings()
    if settings.mask is not None:
        raise SettingsError(
            "zoom does not take --mask: every frame grows out of the last, so there is no input "
            "for black to keep (masks apply to dream, video and batch)"
        )
    zooms, rotations, shifts, strengths = _schedules(frames, zoom, rotate, translate, strength)
    fps = Fraction(fps).limit_denominator(1001)
    if not 0 < fps <= 240:
        raise SettingsError(f"fps must be in (0, 240], got {float(fps)}")
    noise = source is None or settings.init == "noise"
    if not noise:
        imagefiles.open_image(source)
    if settings.guide:
        imagefiles.open_image(settings.guide)
    if soundtrack is not None and not Path(soundtrack).is_file():
        raise ImageError(f"no such file: {soundtrack}")
    inputs = (source if not noise else None, soundtrack, *settings.files)
    output = check_video_output(output, force=force, inputs=inputs)
    options = JobOptions(output, Path(work_dir) if work_dir is not None else None, resume, force, keep_frames,
                         progress, on_frame)  # fmt: skip
    settings = _seeded(settings.replace(init="noise") if noise else settings, options)
    first = _zoom_start(source, settings, noise)
    size = (first.shape[1], first.shape[0])
    _check_transforms(zooms, shifts, size)
    job = {
        "kind": "zoom",
        "input": None if noise else _file_id(Path(source)),
        "size": size,
        **_described(zoom=(zoom, zooms), rotate=(rotate, rotations), translate=(translate, shifts)),
        "settings": settings.to_dict(),
    }
    if not _is_constant(strength) or strength != 1:
        job.update(_described(strength=(strength, strengths)))
    if soundtrack is not None:
        job["soundtrack"] = _file_id(Path(soundtrack))

    def make(dreamer: FrameDreamer, index: int, _item, prev: np.ndarray | None) -> np.ndarray:
        if index == 0:
            return dreamer.dream(first, strengths[0])
        if prev is None:
            raise OutputError(
                f"cannot read {FrameCache(options.folder, {}).path(index - 1)}; use --force to start again"
            )
        matrix = zoom_transform(size, zooms[index], rotations[index], tuple(shifts[index]))
        return dreamer.dream(zoom_step(prev, matrix), strengths[index])

    run = dream_frames(job, settings, backbone, range(frames), make, options, total=frames, desc="zooming")
    audio = dict(audio_from=Path(soundtrack), duration=frames / fps) if soundtrack is not None else {}
    return _finish(
        run,
        options,
        fps,
        size,
        lambda frames: write_video(output, frames, fps=fps, comment=settings.to_json(), **audio),
    )
