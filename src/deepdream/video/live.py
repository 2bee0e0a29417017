"""Live dreaming: a camera, device or stream dreamed as it plays, the newest frame first, recorded as shown.

A reader thread keeps only the newest frame of the source (`NewestFrame`); the dreamer takes it when it
is free, so frames it cannot keep up with are dropped and the delay from capture to display stays one
frame's dream. Frames go through `jobs.frame_loop` with the video's warm-started steady coherence, the
same loop and frame function as `dream_video`. What is shown is recorded with its own times (variable
frame rate) and the recording is finished on --duration, Ctrl-C, the source's end or a stall.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np

from ..errors import SettingsError, VideoError
from ..models.backbone import Backbone
from ..runtime import draw_seed
from ..settings import Settings
from .coherence import SteadyCoherence
from .jobs import FrameDreamer, frame_loop, video_frame, with_previous
from .reading import _open, _video_stream, even_size
from .writing import Recording, check_video_output

log = logging.getLogger(__name__)

# seconds without a new frame after which a live source counts as stalled
STALL_SECONDS = 5.0
# a carried frame's warm start: 1 step at half the step size holds a 3x activation gain on a still scene
# with less boiling than 2 steps, at half their cost (docs/live.md)
STEPS, STRENGTH = 1, 0.5
FLOW = "dis-fast"  # the flow costs a quarter of a 1-step frame at the medium preset
# ascent steps (finest octave) for what the flow cannot carry in live: a cut or a pan's new strip
NEW_STEPS = 6


class NewestFrame:
    """The newest frame of a source, handed from the reader thread to the dreamer: a frame not taken before
    the next one arrives is dropped. The reader ends it (`end`), with an error when the source failed."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._frame: np.ndarray | None = None
        self._captured = 0.0  # time.perf_counter() when the frame arrived
        self.arrived = 0  # frames the source gave
        self.taken = 0
        self._ended = False
        self._error: Exception | None = None

    def put(self, frame: np.ndarray) -> None:
        with self._ready:
            self._frame, self._captured = frame, time.perf_counter()
            self.arrived += 1
            self._ready.notify_all()

    def end(self, error: Exception | None = None) -> None:
        with self._ready:
            self._ended, self._error = True, error
            self._ready.notify_all()

    def take(self, stall: float) -> tuple[np.ndarray, float] | None:
        """The newest frame not taken yet and when it arrived; None once the source ended; VideoError when it
        failed or gave nothing for `stall` seconds."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._frame is not None or self._ended, timeout=stall):
                raise VideoError(f"the source stalled: no frame for {stall:g} s")
            if self._frame is None:
                if self._error is not None:
                    raise self._error
                return None
            frame, captured, self._frame = self._frame, self._captured, None
            self.taken += 1
            return frame, captured

    @property
    def dropped(self) -> int:
        return self.arrived - self.taken


class Source:
    """A running reader of one source into a `NewestFrame`: `stop()` ends it."""

    def __init__(self, name: str, read: Callable[[NewestFrame, threading.Event], None], close: Callable[[], None]):
        self.name, self.frames, self._stop, self._close = name, NewestFrame(), threading.Event(), close
        self._thread = threading.Thread(target=self._run, args=(read,), name=f"live source {name}", daemon=True)

    def _run(self, read) -> None:
        try:
            read(self.frames, self._stop)
            self.frames.end()
        except VideoError as exc:
            self.frames.end(exc)
        except Exception as exc:  # a decoder or driver failure: one line for the user, the detail in the log
            log.exception("live source %s failed", self.name)
            self.frames.end(VideoError(f"{self.name} stopped: {exc}"))

    def start(self) -> "Source":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self._close()


def _same_size(name: str, first: tuple[int, int] | None, frame: np.ndarray, index: int) -> tuple[int, int]:
    h, w = frame.shape[:2]
    if first is not None and (w, h) != first:
        raise VideoError(f"{name}: the frame size changed from {first[0]}x{first[1]} to {w}x{h} at frame {index + 1}")
    return w, h


def _camera(spec: str) -> Source:
    """An OpenCV capture: a camera index ('0') or a device path ('/dev/video0')."""
    name = f"camera {spec}" if spec.isdigit() else spec
    if not spec.isdigit() and not os.path.exists(spec):
        raise VideoError(f"no such device: {spec}")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV's warnings would add lines
    try:
        capture = cv2.VideoCapture(int(spec) if spec.isdigit() else spec)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{name} cannot be opened: it does not exist, or another program is using it")

    def read(out: NewestFrame, stop: threading.Event) -> None:
        size = None
        while not stop.is_set():
            ok, bgr = capture.read()
            if not ok:
                if size is None:
                    raise VideoError(f"{name} gives no frames: is another program using it?")
                raise VideoError(f"{name} stopped giving frames")
            size = _same_size(name, size, bgr, out.arrived)
            out.put(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    return Source(name, read, capture.release)


def _stream(spec: str, stall: float) -> Source:
    """A file (played at its own rate) or a URL (as fast as it comes), decoded by PyAV."""
    paced = "://" not in spec
    if paced:
        container = _open(Path(spec))
    else:
        try:
            container = av.open(spec, "r", timeout=(stall, stall))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(f"cannot open the stream {spec}: {exc}") from None
    try:
        stream = _video_stream(container, Path(spec))
    except VideoError:
        container.close()
        raise
    stream.thread_type = "AUTO"

    def read(out: NewestFrame, stop: threading.Event) -> None:
        began, first_time, size = None, None, None
        try:
            for frame in container.decode(stream):
                if stop.is_set():
                    return
                array = frame.to_ndarray(format="rgb24")
                size = _same_size(spec, size, array, out.arrived)
                if paced and frame.time is not None:  # a file plays at its own rate, as a camera would
                    if began is None:
                        began, first_time = time.perf_counter(), frame.time
                    wait = began + (frame.time - first_time) - time.perf_counter()
                    if wait > 0 and stop.wait(wait):
                        return
                out.put(array)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{spec} stopped: {exc}") from None
        if not paced:
            raise VideoError(f"the stream {spec} ended")

    return Source(spec, read, container.close)


def open_source(spec: str | int, stall: float = STALL_SECONDS) -> Source:
    """A camera index, a device path, a URL or a video file, opened (not started); VideoError if it cannot be."""
    spec = str(spec)
    if spec.isdigit() or spec.startswith("/dev/"):
        return _camera(spec)
    return _stream(spec, stall)


class Window:
    """An OpenCV window, when this OpenCV has one and there is a display; otherwise nothing is shown."""

    TITLE = "deepdream live (q: stop)"

    def __init__(self) -> None:
        self.open = False
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.name == "nt"):
            return
        try:
            cv2.namedWindow(self.TITLE, cv2.WINDOW_NORMAL)
            self.open = True
        except cv2.error:  # opencv-python-headless: no GUI at all
            pass

    def show(self, frame: np.ndarray) -> bool:
        """Show a frame; False once the user asked to stop (q or Esc)."""
        if not self.open:
            return True
        cv2.imshow(self.TITLE, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    def close(self) -> None:
        if self.open:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.TITLE)


@dataclass(frozen=True)
class LiveOptions:
    """How a live session runs: what it records, for how long, at what size, and how it reports."""

    output: Path | None = None  # record what is shown (MP4/MOV/MKV), finished on every way out
    duration: float | None = None  # seconds; None: until the source ends, a stall, q or Ctrl-C
    max_side: int | None = None  # cap on the frames' long side (None: the source's size)
    flow: str = FLOW
    steps: int = STEPS  # ascent steps per carried frame (the warm start)
    strength: float = STRENGTH  # of the step size, for those steps
    new_steps: int | None = NEW_STEPS  # for new regions and cuts (None: a full dream, as in a video)
    window: bool = True  # show a window when there is a display
    stall: float = STALL_SECONDS
    force: bool = False
    on_frame: Callable[["LiveFrame"], None] | None = None


@dataclass(frozen=True)
class LiveFrame:
    """One shown frame: the dream, the camera frame it came from, its delay and its ascent steps."""

    index: int
    dream: np.ndarray
    source: np.ndarray
    latency: float  # seconds from the frame's arrival to its display
    steps: int


@dataclass
class LiveResult:
    """What a live session did; `fps` is frames shown per second of the session."""

    source: str
    shown: int = 0
    arrived: int = 0  # frames the source gave, dropped ones included
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds into the session each frame was shown
    output: Path | None = None
    recorded: int = 0
    ended: str = ""

    @property
    def fps(self) -> float:
        return self.shown / self.seconds if self.seconds > 0 else 0.0

    @property
    def dropped(self) -> int:
        return max(0, self.arrived - self.shown)

    @property
    def steady_fps(self) -> float:
        """Frames shown per second after the first (a full dream, and the network's warm-up)."""
        span = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
        return (len(self.times) - 1) / span if span > 0 else 0.0

    @property
    def latency(self) -> float:
        return float(np.mean(self.latencies)) if self.latencies else 0.0

    def summary(self) -> str:
        where = f"; recorded {self.recorded} frames to {self.output}" if self.output is not None else ""
        return (
            f"{self.ended}: {self.shown} frames shown in {self.seconds:.1f} s ({self.fps:.1f} fps), "
            f"{self.dropped} of {self.arrived} source frames dropped, {self.latency:.2f} s from capture to "
            f"display on average, {np.mean(self.steps) if self.steps else 0:.0f} ascent steps per frame{where}"
        )


def dream_live(
    source: str | int, settings: Settings | None = None, options: LiveOptions = LiveOptions(), *,
    backbone: Backbone | None = None,
) -> LiveResult:  # fmt: skip
    """Dream a camera (index or device path), stream URL or video file as it plays; returns what was shown.

    The first frame gets a full dream, each next one a warm start from the previous dream carried along
    the optical flow (`SteadyCoherence`: `options.steps` steps at `options.strength`), and what the flow
    cannot carry (a new region, a cut) `options.new_steps` steps on the finest octave. A stall, a stopped
    stream or a frame size that changes raise VideoError after the recording so far has been finished;
    Ctrl-C ends the session cleanly.
    """
    settings = settings or Settings()
    if settings.init != "image":
        raise SettingsError("live frames are dreamed from the camera; --init noise does not apply")
    if options.duration is not None and not options.duration > 0:
        raise SettingsError(f"duration must be positive, got {options.duration}")
    if settings.seed is None:
        settings = settings.replace(seed=draw_seed())
    follow = SteadyCoherence(
        options.flow, warm_steps=options.steps, warm_strength=options.strength, new_steps=options.new_steps
    )
    output = None
    if options.output is not None:
        inputs = (str(source) if Path(str(source)).exists() else None, *settings.files)
        output = check_video_output(options.output, force=options.force, inputs=inputs)
    result = LiveResult(str(source), output=output)
    feed = open_source(source, options.stall)
    recording = Recording(output, settings.to_json()) if output is not None else None
    window = Window() if options.window else None
    failure: VideoError | None = None
    began = time.perf_counter()
    arrivals: list[float] = []  # when each frame taken arrived
    taken: list[np.ndarray] = []  # the frame being dreamed
    size: list[tuple[int, int]] = []  # the frames' size, from the first
    try:
        with FrameDreamer(settings, backbone) as dreamer:
            feed.start()
            began = time.perf_counter()

            def frames() -> Iterator[np.ndarray]:
                while options.duration is None or time.perf_counter() - began < options.duration:
                    newest = feed.frames.take(options.stall)
                    if newest is None:
                        result.ended = "the source ended"
                        return
                    frame, arrived = newest
                    if not size:
                        size.append(even_size(frame.shape[1], frame.shape[0], options.max_side))
                    if frame.shape[1::-1] != size[0]:
                        frame = cv2.resize(frame, size[0], interpolation=cv2.INTER_AREA)
                    arrivals.append(arrived)
                    taken[:] = [frame]
                    yield frame
                result.ended = f"{options.duration:g} s done"

            for made in frame_loop(dreamer, with_previous(frames()), video_frame(follow)):
                shown = time.perf_counter()
                result.shown += 1
                result.latencies.append(shown - arrivals[-1])
                result.steps.append(made.steps)
                result.times.append(shown - began)
                if recording is not None:
                    recording.add(made.dream, shown - began)
                if options.on_frame is not None:
                    options.on_frame(LiveFrame(made.index, made.dream, taken[0], shown - arrivals[-1], made.steps))
                if window is not None and not window.show(made.dream):
                    result.ended = "stopped"
                    break
    except KeyboardInterrupt:
        result.ended = "interrupted"
    except VideoError as exc:
        failure, result.ended = exc, "failed"
    finally:
        result.seconds = time.perf_counter() - began
        feed.stop()
        result.arrived = feed.frames.arrived
        if window is not None:
            window.close()
        if recording is not None:
            if failure is None and not result.ended:  # an unexpected error: no half-made file is left
                recording.discard()
            else:
                result.recorded = recording.finish()
    if failure is not None:
        kept = f"; the {result.recorded} frames before it are recorded in {output}" if result.recorded else ""
        raise VideoError(f"{failure}{kept}")
    return result


class LiveSession:
    """Live frames pushed one at a time (a browser's webcam), through the same frame function as `dream_live`
    and `dream_video`; steps, strength and the settings may change between frames.

    A new objective (another layer, model or seed) or a new frame size starts over with a full dream. Not
    thread-safe: one caller at a time (the studio runs one stream per session).
    """

    def __init__(self, settings: Settings, backbone: Backbone | None = None, *, max_side: int | None = 320,
                 steps: int = STEPS, strength: float = STRENGTH, flow: str = FLOW,
                 new_steps: int | None = NEW_STEPS):  # fmt: skip
        self.max_side, self.flow, self.new_steps = max_side, flow, new_steps
        self.follow = SteadyCoherence(flow, warm_steps=steps, warm_strength=strength, new_steps=new_steps)
        self.settings = settings if settings.seed is not None else settings.replace(seed=draw_seed())
        self.dreamer = FrameDreamer(self.settings, backbone)
        self.make = video_frame(self.follow)
        self.prev: tuple[np.ndarray, np.ndarray] | None = None  # the last (frame, dream)
        self.index = 0

    def update(self, settings: Settings | None = None, *, steps: int | None = None, strength: float | None = None):
        """Change what the next frames get; new settings (another objective) start over with a full dream."""
        steps, strength = steps or self.follow.warm_steps, strength or self.follow.warm_strength
        if (steps, strength) != (self.follow.warm_steps, self.follow.warm_strength):  # the flow keeps its state
            self.follow = SteadyCoherence(self.flow, warm_steps=steps, warm_strength=strength, new_steps=self.new_steps)
            self.make = video_frame(self.follow)
        if settings is not None:
            settings = settings if settings.seed is not None else settings.replace(seed=self.settings.seed)
            if settings != self.settings:
                self.dreamer.close()
                self.settings, self.dreamer, self.prev = settings, FrameDreamer(settings, self.dreamer.backbone), None

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, int]:
        """The dream of one H x W x 3 uint8 frame (the long side capped at max_side) and its ascent steps."""
        size = even_size(frame.shape[1], frame.shape[0], self.max_side)
        if frame.shape[1::-1] != size:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        if self.prev is not None and self.prev[0].shape != frame.shape:
            self.prev = None  # the camera changed its size: start over
        prev_frame, prev_dream = self.prev if self.prev is not None else (None, None)
        before = self.dreamer.steps
        dream = self.make(self.dreamer, self.index, (frame, prev_frame), prev_dream)
        self.prev, self.index = (frame, dream), self.index + 1
        return dream, self.dreamer.steps - before

    def close(self) -> None:
        self.dreamer.close()
