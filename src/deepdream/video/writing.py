"""Videos out: encode frames atomically as MP4/MOV/MKV/WebM (with the input's audio) or GIF."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np
from PIL import Image

from .. import imagefiles
from ..errors import OutputError

# output extension -> video encoder; every one gets the input's audio except GIF
VIDEO_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9"}
# x264's output depends on its thread count, which defaults to the machine's cores: a fixed count makes the
# same frames the same bytes on every machine (batch workers, Ray nodes); encoding is never the bottleneck
VIDEO_OPTIONS = {
    "libx264": {"crf": "18", "preset": "medium", "threads": "4"},
    "libvpx-vp9": {"crf": "30", "b:v": "0", "row-mt": "1"},
}
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


class Recording:
    """Frames encoded as they come, with their own times (variable frame rate), into a hidden temporary
    file beside `path`; `finish()` renames it into place, `discard()` removes it. A recording is never seen
    half-written: until it is finished it has another name. For MP4/MOV/MKV (H.264) outputs."""

    def __init__(self, path: Path, comment: str | None = None):
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".m4v", ".mov", ".mkv"):
            raise OutputError(f"a live recording is written as .mp4, .mov or .mkv, not '{self.path.suffix}'")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        try:
            self.out = av.open(str(self.tmp), "w")
        except (av.error.FFmpegError, OSError) as exc:
            self.tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self.path}: {exc}") from None
        if comment:
            self.out.metadata["comment"] = comment
        self.stream = None
        self.frames = 0
        self.last_ms = -1

    def add(self, array: np.ndarray, seconds: float) -> None:
        """Encode an H x W x 3 uint8 frame shown `seconds` after the recording began."""
        if self.stream is None:
            codec = VIDEO_CODECS[self.path.suffix.lower()]
            self.stream = self.out.add_stream(codec, rate=30, options=dict(VIDEO_OPTIONS[codec]))
            self.stream.height, self.stream.width = array.shape[:2]
            self.stream.pix_fmt = "yuv420p"
            self.stream.codec_context.time_base = self.stream.time_base = Fraction(1, 1000)
        ms = max(self.last_ms + 1, round(seconds * 1000))  # timestamps must grow
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
        frame.pts, frame.time_base = ms, Fraction(1, 1000)
        self.out.mux(self.stream.encode(frame))
        self.frames, self.last_ms = self.frames + 1, ms

    def finish(self) -> int:
        """Close the file and move it into place; returns the frames written (0: nothing was recorded, no file)."""
        if self.frames == 0:
            self.discard()
            return 0
        try:
            self.out.mux(self.stream.encode(None))
            self.out.close()
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.frames

    def discard(self) -> None:
        with contextlib.suppress(av.error.FFmpegError, OSError):
            self.out.close()
        self.tmp.unlink(missing_ok=True)
