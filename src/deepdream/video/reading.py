"""Videos in: probe a file, decode its frames upright as RGB arrays, and the time parsing around it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .. import imagefiles
from ..errors import VideoError

DEFAULT_FPS = Fraction(25)


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
            f"{path} is a still image, not a video (use 'deepdream dream', or 'deepdream zoom' to animate it)"
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
