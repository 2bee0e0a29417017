"""Videos in and out: dream a clip frame by frame with optical-flow coherence, or a zoom feedback loop.

One network load and one seed dream every frame. Each frame starts from its input blended with the
previous frame's dream, warped along the optical flow between the two input frames, so hallucinated
detail moves with the picture instead of being re-invented (flickering) every frame. Dreamed frames
are cached as PNGs in a work folder, so an interrupted job resumes where it stopped; the video file
is written (atomically) only once every frame exists. The input's audio is copied into the output.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import av
import cv2
import numpy as np
import torch
from PIL import Image

from . import imagefiles
from .engine.objectives import build_objective
from .engine.octaves import Dreamer, noise_image, resize
from .models.backbone import Backbone
from .models.load import backbone_from_settings
from .runtime import draw_seed, progress_bar
from .errors import ImageError, OutputError, SettingsError
from .settings import Settings

# output extension -> video encoder; every one gets the input's audio except GIF
VIDEO_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9"}
VIDEO_OPTIONS = {"libx264": {"crf": "18", "preset": "medium"}, "libvpx-vp9": {"crf": "30", "b:v": "0", "row-mt": "1"}}
AUDIO_CODECS = {".webm": "libopus"}  # the encoder used when the input's audio cannot be copied as is
# audio codecs each container takes as they are (MKV takes anything its muxer supports)
_MP4_AUDIO = frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"})
COPYABLE_AUDIO = {
    ".mp4": _MP4_AUDIO,
    ".m4v": _MP4_AUDIO,
    ".mov": _MP4_AUDIO | {"pcm_s16le", "pcm_s24le", "pcm_f32le"},
    ".webm": frozenset({"opus", "vorbis"}),
}
OUTPUT_EXTENSIONS = (*VIDEO_CODECS, ".gif")
DEFAULT_FPS = Fraction(25)


class VideoError(ImageError):
    """An input video cannot be used: not a video, no video stream, no frames, or no decoder for its codec."""


# ---------------------------------------------------------------------------------------------- time


def parse_time(text: str) -> float:
    """Seconds from '90', '2.5', '1:30' or '00:01:30.5'; ValueError if malformed or negative."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or not all(p.replace(".", "", 1).isdigit() for p in parts):
        raise ValueError(f"'{text}' is not a time (use seconds or HH:MM:SS)")
    if any(float(p) >= 60 for p in parts[1:]):
        raise ValueError(f"'{text}': minutes and seconds must be below 60")
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + float(p)
    return seconds


def format_seconds(seconds: float) -> str:
    """'1h02m03s' / '2m03s' / '4.2s' for messages."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


# ---------------------------------------------------------------------------------------------- input


@dataclass(frozen=True)
class VideoInfo:
    """What the reader needs to know about an input video, checked by decoding its first frame."""

    path: Path
    width: int  # as displayed, rotation applied
    height: int
    fps: Fraction
    duration: float | None  # seconds, when the container knows
    frames: int | None  # frame count, when the container knows
    codec: str
    audio: str | None  # audio codec name, None without audio
    quarter_turns: int  # counter-clockwise quarter turns that put decoded frames upright


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise VideoError(f"no such file: {path}")
    if path.is_dir():
        raise VideoError(f"{path} is a directory, not a video")
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        raise VideoError(f"{path} is not a video FFmpeg can read") from None
    name = container.format.name
    if name.startswith("image2") or name.endswith("_pipe"):
        container.close()
        raise VideoError(
            f"{path} is a still image, not a video "
            f"(use 'deepdream dream', or 'deepdream zoom' to animate it)"
        )
    return container


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first real video stream (cover art attached to audio files does not count)."""
    attached = av.stream.Disposition.attached_pic
    streams = [s for s in container.streams.video if not (s.disposition & attached)]
    if not streams:
        kinds = sorted({s.type for s in container.streams})
        raise VideoError(f"{path} has no video stream ({', '.join(kinds) or 'no streams'})")
    stream = streams[0]
    if stream.codec_context is None:
        raise VideoError(f"{path}: its video codec is not supported (no decoder for it in this FFmpeg build)")
    return stream


def _fps(stream: av.video.stream.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and 0 < rate < 1000:
            return Fraction(rate)
    return DEFAULT_FPS


def _quarter_turns(frame: av.VideoFrame) -> int:
    # `rotation` is the counter-clockwise angle the display matrix applies (phones store portrait clips this way)
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


def probe(path: str | Path) -> VideoInfo:
    """Open a video, pick its video stream and decode the first frame; VideoError on anything unusable."""
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        first = next(_decode(container, stream, path), None)
        if first is None:
            raise VideoError(f"{path} has no video frames")
        turns = _quarter_turns(first)
        w, h = (first.height, first.width) if turns % 2 else (first.width, first.height)
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        audio = next((s.codec_context.name if s.codec_context else s.type for s in container.streams.audio), None)
        codec = stream.codec_context.name
        return VideoInfo(path, w, h, _fps(stream), duration, stream.frames or None, codec, audio, turns)


def _decode(container, stream, path: Path) -> Iterator[av.VideoFrame]:
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot decode {path}: {exc}") from None


def read_frames(
    path: str | Path, *, start: float = 0.0, duration: float | None = None, size: tuple[int, int] | None = None
) -> Iterator[np.ndarray]:
    """Decoded frames as H x W x 3 uint8 RGB, upright, from `start` s for `duration` s, resized to (w, h)."""
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        fps = _fps(stream)
        slack = 0.25 / float(fps)  # timestamps are rounded; a frame belongs to the range its time rounds into
        end = start + duration if duration is not None else math.inf
        if start > 0 and stream.time_base is not None:
            try:
                container.seek(int(start / stream.time_base), stream=stream)  # lands on the keyframe before
            except av.error.FFmpegError:
                pass  # not seekable: decode from the beginning and skip
        for index, frame in enumerate(_decode(container, stream, path)):
            t = frame.time if frame.time is not None else index / float(fps)
            if t < start - slack:
                continue
            if t >= end - slack:
                break
            turns = _quarter_turns(frame)
            if size is None:
                array = frame.to_ndarray(format="rgb24")
            else:
                w, h = (size[1], size[0]) if turns % 2 else size
                array = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
            yield np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def even_size(width: int, height: int, max_size: int | None = None) -> tuple[int, int]:
    """(width, height) capped at max_size on the long side, rounded down to even (yuv420p needs it)."""
    w, h = imagefiles.fit_size(width, height, max_size)
    return max(2, w - w % 2), max(2, h - h % 2)


# ---------------------------------------------------------------------------------------------- optical flow

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def dis_flow() -> FlowFn:
    """OpenCV's DIS flow (fast, copes with large motion): (gray a, gray b) -> H x W x 2, a's pixels in b."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return lambda a, b: dis.calc(a, b, None)


def farneback_flow() -> FlowFn:
    """Farneback's polynomial-expansion flow: smoother, slower than DIS."""
    return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.1, 0)


# name -> factory of a flow function (built once per video; DIS keeps state); None: plain per-frame dreaming
FLOWS: dict[str, Callable[[], FlowFn] | None] = {"dis": dis_flow, "farneback": farneback_flow, "none": None}


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `image` at (x, y) + flow(x, y): carries the previous frame onto the current frame's pixels."""
    h, w = flow.shape[:2]
    ys, xs = np.indices((h, w), dtype=np.float32)
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class FlowCoherence:
    """Start each frame from its input blended with the previous dream warped along the optical flow.

    The flow runs from the current input frame to the previous one, so every current pixel knows where
    it was; where the warped previous input disagrees with the current input (occlusions, new objects,
    scene cuts) the blend fades out, so the old dream does not ghost over what was not there before.

    Gradient ascent is chaotic: a 1/255 change of the input gives a different pattern. So the new dream
    each frame adds is, in effect, independent of the carried one; carried with weight b it accumulates
    to sqrt(1 / (1 - b^2)) times its own strength. Dreaming each carried frame at `refresh` =
    sqrt(1 - b^2) of the full step keeps the total as strong as one full dream, while consecutive frames
    now differ only by the small refresh: that, not the blend alone, is what removes the flicker.
    """

    def __init__(self, flow: str = "dis", blend: float = 0.8, tolerance: float = 0.15):
        if flow not in FLOWS:
            raise SettingsError(f"unknown flow '{flow}' (choose from {', '.join(FLOWS)})")
        if not 0 <= blend <= 1:
            raise SettingsError(f"blend must be in [0, 1], got {blend}")
        factory = FLOWS[flow]
        self.flow = factory() if factory is not None and blend > 0 else None
        self.blend = blend
        self.tolerance = tolerance
        # floored so that --blend 1 still dreams a little (and the step size stays positive)
        self.refresh = max(0.05, math.sqrt(1 - blend**2)) if self.flow is not None else 1.0

    def carries(self, prev_frame: np.ndarray | None, prev_dream: np.ndarray | None) -> bool:
        """Whether a frame with these predecessors starts from a carried dream (so dreams at `refresh`)."""
        return self.flow is not None and prev_frame is not None and prev_dream is not None

    def __call__(self, frame: np.ndarray, prev_frame: np.ndarray | None, prev_dream: np.ndarray | None) -> np.ndarray:
        """The image to dream for `frame` (uint8 H x W x 3) as float32 in [0, 1]."""
        current = frame.astype(np.float32) / 255
        if not self.carries(prev_frame, prev_dream):
            return current
        flow = self.flow(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.cvtColor(prev_frame, cv2.COLOR_RGB2GRAY))
        dream = warp(prev_dream.astype(np.float32) / 255, flow)
        before = warp(prev_frame.astype(np.float32) / 255, flow)
        error = cv2.GaussianBlur(np.abs(before - current).mean(axis=2), (0, 0), 2)  # H x W
        weight = self.blend * np.clip(1 - error / self.tolerance, 0, 1)[..., None]
        return current + weight * (dream - current)


def flicker(frames: Iterable[np.ndarray]) -> float:
    """Mean absolute difference between consecutive frames, in 0..255 units."""
    diffs, prev = [], None
    for frame in frames:
        frame = frame.astype(np.float32)
        if prev is not None:
            diffs.append(float(np.abs(frame - prev).mean()))
        prev = frame
    return float(np.mean(diffs)) if diffs else 0.0


# ---------------------------------------------------------------------------------------------- output


def check_video_output(path: str | Path, *, force: bool = False, inputs: tuple[str | Path | None, ...] = ()) -> Path:
    """Validate an output path before any work: a known video format, not an input, not existing unless forced."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_EXTENSIONS:
        raise OutputError(f"unknown video format '{path.suffix}' for {path} (use {', '.join(OUTPUT_EXTENSIONS)})")
    return imagefiles.check_writable(path, force=force, inputs=tuple(p for p in inputs if p is not None))


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    fps: Fraction,
    audio_from: Path | None = None,
    start: float = 0.0,
    duration: float | None = None,
    comment: str | None = None,
) -> str:
    """Encode uint8 RGB frames atomically (format from the extension) with the audio of `audio_from`
    between start and start + duration; returns what happened to the audio, for messages."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise OutputError(f"unknown video format '{path.suffix}' (use {', '.join(OUTPUT_EXTENSIONS)})")
    outcome = ["no audio"]

    def write(tmp: Path) -> None:
        if ext == ".gif":
            _write_gif(tmp, frames, fps)
            outcome[0] = "no audio (GIF has none)" if audio_from is not None and _has_audio(audio_from) else "no audio"
        else:
            outcome[0] = _write_av(tmp, ext, frames, fps, audio_from, start, duration, comment)

    try:
        imagefiles.atomic_write(path, write)
    except PermissionError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc
    except av.error.FFmpegError as exc:
        raise OutputError(f"cannot encode {path}: {exc}") from None
    return outcome[0]


def _write_gif(tmp: Path, frames: Iterable[np.ndarray], fps: Fraction) -> None:
    # Pillow picks an adaptive palette per frame; FFmpeg's GIF encoder would need a palette pass
    images = (Image.fromarray(a) for a in frames)
    first = next(images, None)
    if first is None:
        raise OutputError("no frames to write")
    first.save(tmp, format="GIF", save_all=True, append_images=images, duration=round(1000 / fps), loop=0)


def _has_audio(path: Path) -> bool:
    try:
        with av.open(str(path)) as c:
            return bool(c.streams.audio)
    except av.error.FFmpegError:
        return False


def _write_av(tmp, ext, frames, fps, audio_from, start, duration, comment) -> str:
    with av.open(str(tmp), "w") as out:
        if comment:
            out.metadata["comment"] = comment
        audio = _AudioTrack(out, ext, audio_from, start, duration) if audio_from is not None else None
        try:
            stream = None
            count = 0
            for i, array in enumerate(frames):
                if stream is None:
                    codec = VIDEO_CODECS[ext]
                    stream = out.add_stream(codec, rate=fps, options=dict(VIDEO_OPTIONS.get(codec, {})))
                    stream.height, stream.width = array.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    if audio is not None:
                        audio.add_stream()
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
                count += 1
                if audio is not None:
                    audio.mux_until((i + 1) / fps)  # keeps the two streams interleaved
            if stream is None:
                raise OutputError("no frames to write")
            out.mux(stream.encode(None))
            if audio is None:
                return "no audio"
            audio.mux_until(math.inf)
            return audio.outcome
        finally:
            if audio is not None:
                audio.close()


class _AudioTrack:
    """The input's audio between start and start + duration, muxed into `out`: packets copied when the
    output container takes the codec, decoded and re-encoded otherwise."""

    def __init__(self, out, ext: str, source: Path, start: float, duration: float | None):
        self.out, self.ext, self.source, self.start = out, ext, source, start
        self.end = start + duration if duration is not None else math.inf
        self.container = av.open(str(source))
        streams = list(self.container.streams.audio)
        self.input = streams[0] if streams else None
        self.stream = None
        self.items: Iterator[tuple[float, av.Packet]] = iter(())
        self.pending: tuple[float, av.Packet] | None = None
        self.outcome = "no audio in the input"

    def add_stream(self) -> None:
        if self.input is None:
            return
        name = self.input.codec_context.name if self.input.codec_context else None
        if name is not None and name in COPYABLE_AUDIO.get(self.ext, self.out.supported_codecs):
            self.stream = self.out.add_stream_from_template(self.input)
            self.items = self._copied()
            self.outcome = f"audio copied ({name})"
        elif self.input.codec_context is not None:
            codec = AUDIO_CODECS.get(self.ext, "aac")
            ctx = self.input.codec_context
            rate = ctx.sample_rate if codec == "aac" else 48000  # Opus runs at 48 kHz
            layout = "mono" if ctx.layout.nb_channels == 1 else "stereo"
            self.stream = self.out.add_stream(codec, rate=rate, layout=layout)
            self.items = self._reencoded()
            self.outcome = f"audio re-encoded ({name} -> {self.stream.codec_context.name})"
        else:
            self.outcome = "audio dropped (no decoder for its codec)"

    def _copied(self) -> Iterator[tuple[float, av.Packet]]:
        offset = None
        for packet in self.container.demux(self.input):
            if packet.pts is None or packet.dts is None:
                continue
            t = float(packet.pts * packet.time_base)
            if t >= self.end:
                break
            if t < self.start - 1e-3 and self.start > 0:
                continue
            if offset is None:
                offset = round(self.start / packet.time_base) if self.start > 0 else 0
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = self.stream
            yield t - self.start, packet

    def _reencoded(self) -> Iterator[tuple[float, av.Packet]]:
        rate = self.stream.codec_context.sample_rate
        samples = 0
        for frame in self.container.decode(self.input):
            t = frame.time if frame.time is not None else 0.0
            if t >= self.end:
                break
            if t < self.start - 1e-3:
                continue
            frame.pts = None  # the encoder's resampler re-times them
            for packet in self.stream.encode(frame):
                yield samples / rate, packet
            samples += round(frame.samples * rate / frame.sample_rate)
        for packet in self.stream.encode(None):
            yield samples / rate, packet

    def mux_until(self, seconds: float) -> None:
        """Mux the audio packets that start before `seconds` into the output."""
        try:
            while True:
                item = self.pending if self.pending is not None else next(self.items)
                self.pending = None
                if item[0] >= seconds:
                    self.pending = item
                    return
                self.out.mux(item[1])
        except StopIteration:
            pass
        except av.error.FFmpegError as exc:
            raise OutputError(f"cannot copy the audio of {self.source}: {exc}") from None

    def close(self) -> None:
        self.container.close()


# ---------------------------------------------------------------------------------------------- frame cache


class FrameCache:
    """Dreamed frames as numbered PNGs in a work folder, with the description of the job that made them.

    A frame file appears only complete (atomic write), so after an interruption every file there is a
    finished frame. Only files this class names are ever deleted.
    """

    MANIFEST = "job.json"
    PATTERN = "frame_*.png"

    def __init__(self, folder: str | Path, job: dict):
        self.folder = Path(folder)
        self.job = json.loads(json.dumps(job))  # tuples -> lists, as read back from disk

    def path(self, index: int) -> Path:
        return self.folder / f"frame_{index:06d}.png"

    def has(self, index: int) -> bool:
        return self.path(index).is_file()

    def count(self) -> int:
        return len(list(self.folder.glob(self.PATTERN))) if self.folder.is_dir() else 0

    def manifest(self) -> dict | None:
        try:
            return json.loads((self.folder / self.MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def prepare(self, *, resume: bool, force: bool) -> int:
        """Make the folder ready; returns the number of finished frames that will be reused."""
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"work folder {self.folder} is a file")
        done = self.count()
        if done and not resume:
            if not force:
                raise OutputError(
                    f"work folder {self.folder} holds {done} dreamed frames of an earlier run: "
                    "add --resume to continue it, or --force to start again"
                )
            self.clear()
            done = 0
        if done:
            old = self.manifest()
            if old != self.job:
                diff = sorted(k for k in set(self.job) | set(old or {}) if (old or {}).get(k) != self.job.get(k))
                if "settings" in diff and old is not None:
                    s_old, s_new = old.get("settings", {}), self.job["settings"]
                    diff.remove("settings")
                    diff += sorted(k for k in set(s_old) | set(s_new) if s_old.get(k) != s_new.get(k))
                raise SettingsError(
                    f"cannot resume: the frames in {self.folder} were made with different "
                    f"{', '.join(diff) if old is not None else 'settings (no job.json)'}; "
                    "use the same options, another --work-dir, or --force without --resume to start again"
                )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.job, indent=2, sort_keys=True)
            imagefiles.atomic_write(self.folder / self.MANIFEST, lambda tmp: tmp.write_text(text))
        except OSError as exc:
            raise OutputError(f"cannot use work folder {self.folder}: {exc}") from exc
        return done

    def save(self, index: int, frame: np.ndarray) -> None:
        try:
            imagefiles.atomic_write(self.path(index), lambda tmp: Image.fromarray(frame).save(tmp, format="PNG"))
        except OSError as exc:
            raise OutputError(f"cannot write frame {self.path(index)}: {exc}") from exc

    def load(self, index: int) -> np.ndarray | None:
        """A finished frame, or None if it is missing or unreadable (then it is dreamed again)."""
        try:
            with Image.open(self.path(index)) as img:
                return np.asarray(img.convert("RGB")).copy()
        except (OSError, ValueError):
            return None

    def frames(self, count: int) -> Iterator[np.ndarray]:
        for i in range(count):
            frame = self.load(i)
            if frame is None:
                raise OutputError(f"frame {self.path(i)} disappeared from the work folder")
            yield frame

    def clear(self) -> None:
        for p in [*self.folder.glob(self.PATTERN), *self.folder.glob(".frame_*.png"), self.folder / self.MANIFEST]:
            p.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the frames and the manifest, and the folder if nothing else is in it."""
        self.clear()
        try:
            self.folder.rmdir()
        except OSError:
            pass


def default_work_dir(output: Path) -> Path:
    """Where frames are cached unless the user names a folder: next to the output, so --resume finds it."""
    return output.with_name(output.name + ".frames")


# ---------------------------------------------------------------------------------------------- jobs


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


FrameHook = Callable[[int], None]


class FrameDreamer:
    """Dreams frames with one loaded network, one objective and one seed (the same jitter every frame).

    `dream(image, strength)` scales the step size: a frame that starts from the carried dream of the
    previous ones needs only part of a full dream on top (see `FlowCoherence.refresh`). A Dreamer is
    cheap (hooks and a blur kernel); one per strength is made in turn, the network is shared.
    """

    def __init__(self, settings: Settings, backbone: Backbone | None = None):
        backbone = backbone_from_settings(settings, backbone)
        guide = imagefiles.load_image(settings.guide, settings.max_size)[0] if settings.guide else None
        self.backbone = backbone
        self.objective = build_objective(backbone, settings, guide)
        self.settings = settings
        self._active = None
        self._strength = None

    def dream(self, image: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """Dream an H x W x 3 image (uint8, or float in [0, 1]); returns uint8."""

        if self._active is None or strength != self._strength:
            self.close()
            settings = self.settings
            if strength != 1:
                settings = settings.replace(step_size=settings.step_size * strength)
            self._active, self._strength = Dreamer(self.backbone, self.objective, settings), strength
        generator = torch.Generator().manual_seed(self.settings.seed if self.settings.seed is not None else 0)
        return _to_uint8(self._active.dream(_to_tensor(image), generator))

    def close(self) -> None:
        if self._active is not None:
            self._active.close()
            self._active = None

    def __enter__(self) -> "FrameDreamer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """H x W x 3 float in [0, 1] or uint8 -> 1 x 3 x H x W float."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    t = t.float() / 255 if t.dtype == torch.uint8 else t.float()
    return t.permute(2, 0, 1)[None]


def _to_uint8(tensor: torch.Tensor) -> np.ndarray:
    return (tensor[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def _seeded(settings: Settings, cache: FrameCache, resume: bool) -> Settings:
    """A fixed seed for every frame; on resume without --seed, the seed of the frames already made."""
    if settings.seed is not None:
        return settings
    old = cache.manifest() if resume and cache.count() else None
    seed = (old or {}).get("settings", {}).get("seed")
    return settings.replace(seed=seed if isinstance(seed, int) else draw_seed())


@contextlib.contextmanager
def _cleanup_if_empty(cache: FrameCache, default_folder: bool):
    """On any failure before the first frame is saved, remove the default work folder again."""
    try:
        yield
    except BaseException:
        if default_folder and cache.count() == 0:
            cache.remove()
        raise


def _file_id(path: Path) -> dict:
    return {"path": str(path.resolve()), "bytes": path.stat().st_size}


def dream_video(
    source: str | Path,
    output: str | Path,
    settings: Settings | None = None,
    *,
    flow: str = "dis",
    blend: float = 0.8,
    start: float = 0.0,
    duration: float | None = None,
    max_size: int | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    keep_frames: bool = False,
    backbone: Backbone | None = None,
    progress: bool = False,
    on_frame: FrameHook | None = None,
) -> VideoResult:
    """Dream every frame of a video with one network and one seed, coherent along the optical flow.

    `flow` is 'dis', 'farneback' or 'none' (plain per-frame dreaming); `blend` is how much of the
    previous frame's warped dream each frame starts from. The output keeps the input's fps, size (or
    the long side capped at `max_size`) and audio. Frames are cached in `work_dir` (default: next to
    the output) and, with `resume`, frames already there are not dreamed again. The output is written
    only once every frame is done; the default work folder is removed then unless `keep_frames`.
    """
    settings = settings or Settings()
    if settings.init != "image":
        raise SettingsError("a video is dreamed from its frames; --init noise does not apply (see 'deepdream zoom')")
    if start < 0 or not math.isfinite(start):
        raise SettingsError(f"start must be >= 0, got {start}")
    if duration is not None and not (duration > 0 and math.isfinite(duration)):
        raise SettingsError(f"duration must be positive, got {duration}")
    coherence = FlowCoherence(flow, blend)  # checks flow and blend before any work
    source = Path(source)
    info = probe(source)
    if info.duration is not None and start >= info.duration:
        length = format_seconds(info.duration)
        raise VideoError(f"{source} is {length} long; nothing to dream from {format_seconds(start)}")
    output = check_video_output(output, force=force, inputs=(source, settings.guide))
    if settings.guide:
        imagefiles.open_image(settings.guide)
    size = even_size(info.width, info.height, max_size)

    cache = FrameCache(work_dir if work_dir is not None else default_work_dir(output), {})
    settings = _seeded(settings, cache, resume)
    job = {
        "kind": "video",
        "input": _file_id(source),
        "start": start,
        "duration": duration,
        "size": size,
        "flow": flow,
        "blend": blend if flow != "none" else 0.0,
        "settings": settings.to_dict(),
    }
    cache = FrameCache(cache.folder, job)
    cache.prepare(resume=resume, force=force)

    spans = [x for x in (duration, info.duration - start if info.duration is not None else None) if x is not None]
    total = round(min(spans) * float(info.fps)) if spans else None
    count = dreamed = 0
    prev_frame = prev_dream = None  # the previous input frame and its dream (uint8, as cached)
    with (
        _cleanup_if_empty(cache, work_dir is None),
        FrameDreamer(settings, backbone) as dreamer,
        progress_bar(total, "dreaming", "frame", enabled=progress) as bar,
    ):
        began = time.perf_counter()
        for index, frame in enumerate(read_frames(source, start=start, duration=duration, size=size)):
            count = index + 1
            if cache.has(index):
                prev_dream = None  # finished: read back only if the next frame needs it
            else:
                if prev_dream is None and index > 0:
                    prev_dream = cache.load(index - 1)
                start_image = coherence(frame, prev_frame, prev_dream)
                strength = coherence.refresh if coherence.carries(prev_frame, prev_dream) else 1.0
                prev_dream = dreamer.dream(start_image, strength)
                cache.save(index, prev_dream)
                dreamed += 1
                if on_frame is not None:
                    on_frame(index)
            prev_frame = frame
            bar.update(1)
        if count == 0:
            end = f" to {format_seconds(start + duration)}" if duration is not None else ""
            raise VideoError(f"{source} has no video frames from {format_seconds(start)}{end}")
    seconds = time.perf_counter() - began

    frames = cache.frames(count)
    audio = write_video(
        output, frames, fps=info.fps, audio_from=source, start=start, duration=duration, comment=settings.to_json()
    )
    kept = work_dir is not None or keep_frames
    if not kept:
        cache.remove()
    return VideoResult(output, count, dreamed, info.fps, size, audio, seconds, cache.folder if kept else None)


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


def dream_zoom(
    source: str | Path | None,
    output: str | Path,
    settings: Settings | None = None,
    *,
    frames: int = 60,
    zoom: float = 1.04,
    rotate: float = 0.0,
    translate: tuple[float, float] = (0.0, 0.0),
    fps: float | Fraction = 24,
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
    the previous one transformed and dreamed again with the same seed. Written as MP4/MOV/MKV/WebM or
    an endlessly looping GIF. With `resume`, frames in the work folder are reused, and asking for more
    frames than before extends the loop.
    """
    settings = settings or Settings()
    if not (isinstance(frames, int) and frames >= 1):
        raise SettingsError(f"frames must be >= 1, got {frames}")
    if not (math.isfinite(zoom) and zoom > 0):
        raise SettingsError(f"zoom must be a positive factor, got {zoom}")
    if not (math.isfinite(rotate) and all(math.isfinite(v) for v in translate)):
        raise SettingsError("rotate and translate must be finite numbers")
    fps = Fraction(fps).limit_denominator(1001)
    if not 0 < fps <= 240:
        raise SettingsError(f"fps must be in (0, 240], got {float(fps)}")
    noise = source is None or settings.init == "noise"
    if not noise:
        imagefiles.open_image(source)
    if settings.guide:
        imagefiles.open_image(settings.guide)
    output = check_video_output(output, force=force, inputs=(source if not noise else None, settings.guide))

    cache = FrameCache(work_dir if work_dir is not None else default_work_dir(output), {})
    settings = _seeded(settings.replace(init="noise") if noise else settings, cache, resume)

    if noise:
        rgb = noise_image(*settings.size, torch.Generator().manual_seed(settings.seed))
    else:
        rgb, _ = imagefiles.load_image(source, settings.max_size)
    size = even_size(rgb.shape[-1], rgb.shape[-2])
    first = _to_uint8(resize(rgb, size[::-1]))
    matrix = zoom_transform(size, zoom, rotate, translate)
    job = {
        "kind": "zoom",
        "input": None if noise else _file_id(Path(source)),
        "size": size,
        "zoom": zoom,
        "rotate": rotate,
        "translate": list(translate),
        "settings": settings.to_dict(),
    }
    cache = FrameCache(cache.folder, job)
    cache.prepare(resume=resume, force=force)

    dreamed = 0
    prev = None  # the previous dreamed frame (uint8, as cached)
    with (
        _cleanup_if_empty(cache, work_dir is None),
        FrameDreamer(settings, backbone) as dreamer,
        progress_bar(frames, "zooming", "frame", enabled=progress) as bar,
    ):
        began = time.perf_counter()
        for index in range(frames):
            if cache.has(index):
                prev = None  # finished: read back only if the next frame needs it
            else:
                if index == 0:
                    start_image = first
                else:
                    prev = prev if prev is not None else cache.load(index - 1)
                    if prev is None:
                        raise OutputError(f"cannot read {cache.path(index - 1)}; use --force to start again")
                    start_image = zoom_step(prev, matrix)
                prev = dreamer.dream(start_image)
                cache.save(index, prev)
                dreamed += 1
                if on_frame is not None:
                    on_frame(index)
            bar.update(1)
    seconds = time.perf_counter() - began

    audio = write_video(output, cache.frames(frames), fps=fps, comment=settings.to_json())
    kept = work_dir is not None or keep_frames
    if not kept:
        cache.remove()
    return VideoResult(output, frames, dreamed, fps, size, audio, seconds, cache.folder if kept else None)
