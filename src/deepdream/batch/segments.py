"""Long videos across workers: one video split into overlapping segments, each dreamed coherently along
the optical flow by `deepdream.video.dream_video` (start/duration), then stitched with the overlap
frames cross-faded so the seams do not jump.

Segment i dreams its share of the frames plus `overlap` frames before it: those lead-in frames warm up
its flow coherence, and in the output they fade from the previous segment's dream to this one's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..errors import VideoError
from ..video.cache import FrameCache
from ..video.reading import probe, read_frames
from ..video.writing import write_video

log = logging.getLogger(__name__)

SEGMENTS_DIR = ".segments"  # under the output folder; hidden, so never planned as input


@dataclass(frozen=True)
class Segment:
    """Frames [first, stop) of a video; the first `lead` are cross-faded with the previous segment."""

    index: int
    count: int  # segments of the video
    first: int
    stop: int
    lead: int
    fps: Fraction
    offset: float = 0.0  # seconds into the input where frame 0 is (the batch's --start)

    @property
    def frames(self) -> int:
        return self.stop - self.first

    @property
    def start(self) -> float:
        return self.offset + self.first / float(self.fps)

    @property
    def duration(self) -> float:
        return self.frames / float(self.fps)


def split(total: int, count: int, overlap: int, fps: Fraction, offset: float = 0.0) -> list[Segment]:
    """`count` segments over `total` frames with nominal boundaries round(i * total / count); each
    segment after the first also dreams the `overlap` frames before its boundary (at most the previous
    segment's own length)."""
    count = max(1, min(count, total))
    bounds = [round(i * total / count) for i in range(count + 1)]
    segments = []
    for i in range(count):
        lead = min(overlap, bounds[i] - bounds[i - 1]) if i else 0
        segments.append(Segment(i, count, bounds[i] - lead, bounds[i + 1], lead, fps, offset))
    return segments


def crossfade_weights(lead: int) -> np.ndarray:
    """Weight of the new segment over its lead-in frames: strictly between 0 and 1, rising."""
    return np.arange(1, lead + 1, dtype=np.float32) / (lead + 1)


def stitch(segments: Sequence[Segment], frames: Sequence[Iterable[np.ndarray]]) -> Iterator[np.ndarray]:
    """The output frames in order: each segment's own frames, its lead-in cross-faded with the
    previous segment's last frames (uint8 H x W x 3 in and out)."""
    held: list[np.ndarray] = []  # the previous segment's frames that overlap this one's lead-in
    for i, (segment, stream) in enumerate(zip(segments, frames)):
        keep = segments[i + 1].lead if i + 1 < len(segments) else 0
        weights = crossfade_weights(segment.lead)
        own = []
        for j, frame in enumerate(stream):
            if j < segment.lead:
                w = weights[j]
                frame = np.clip((1 - w) * held[j].astype(np.float32) + w * frame + 0.5, 0, 255).astype(np.uint8)
            own.append(frame)
            if len(own) > keep:
                yield own.pop(0)
        held = own
    yield from held


def seam_jumps(frames: Sequence[np.ndarray], segments: Sequence[Segment]) -> tuple[list[float], list[float]]:
    """Mean absolute change between consecutive output frames (0..255) at the seams (the transitions
    into, through and out of each cross-fade) and inside the segments."""
    seam_steps = set()
    for s in segments[1:]:
        seam_steps |= set(range(s.first - 1, s.first + s.lead))  # step t: frame t -> t + 1
    seams, inside = [], []
    for t in range(len(frames) - 1):
        jump = float(np.abs(frames[t + 1].astype(np.float32) - frames[t]).mean())
        (seams if t in seam_steps else inside).append(jump)
    return seams, inside


def frame_count(source: Path, start: float, duration: float | None) -> tuple[int, Fraction]:
    """Frames in [start, start + duration) of a video, and its fps (decoding when the container is vague)."""
    info = probe(source)
    if info.duration is not None and info.frames is not None and start == 0 and duration is None:
        return info.frames, info.fps
    if info.duration is not None:
        span = info.duration - start if duration is None else min(duration, info.duration - start)
        if span <= 0:
            raise VideoError(f"{source} has no frames from {start} s")
        return round(span * float(info.fps)), info.fps
    return sum(1 for _ in read_frames(source, start=start, duration=duration, size=(16, 16))), info.fps


def segment_folder(outdir: Path, relpath: str, index: int) -> Path:
    return outdir / SEGMENTS_DIR / relpath / f"{index:04d}"


def join(source: Path, output: Path, segments: Sequence[Segment], folders: Sequence[Path], *,
         start: float, duration: float | None) -> None:  # fmt: skip
    """Stitch the segments' frames into the output video (atomically), with the input's audio."""
    streams = []
    for segment, folder in zip(segments, folders):
        cache = FrameCache(folder, {})
        count = cache.count()
        # the container's duration can overstate the frames; only the last segment may come up short
        if count != segment.frames and (segment.index + 1 < segment.count or count == 0):
            raise VideoError(f"segment {segment.index + 1} of {source} has {count} frames, expected {segment.frames}")
        streams.append(cache.frames(count))
    log.debug("joining %d segments of %s into %s", len(segments), source, output)
    write_video(output, stitch(segments, streams), fps=segments[0].fps, audio_from=source, start=start,
                duration=duration)  # fmt: skip


def remove_folders(folders: Iterable[Path]) -> None:
    """Delete finished segments' frames (only the files FrameCache names), then the emptied folders."""
    for folder in folders:
        FrameCache(folder, {}).remove()
        for parent in folder.parents:
            if not parent.is_dir() or any(parent.iterdir()):
                break
            parent.rmdir()
            if parent.name == SEGMENTS_DIR:
                break
