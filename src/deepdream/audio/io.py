"""Sound files in and out through PyAV (FFmpeg): probing, streamed decoding to float32, encoding with
the settings in the file's tags. The only audio module that touches files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from ..errors import ImageError, OutputError
from ..imagefiles import METADATA_KEY, check_writable

# below 4 kHz there is no speech or music left to dream; above 384 kHz no converter records
MIN_RATE, MAX_RATE = 4000, 384_000
MAX_CHANNELS = 8
# a decoded block is at most this many samples per channel (about 1.5 s at 44.1 kHz)
BLOCK = 1 << 16
# a file that decodes to less than this share of the length its header announces is truncated
TRUNCATED = 0.9


@dataclass(frozen=True)
class OutputFormat:
    """How an extension is written: container, codec, sample format, and what the codec can store."""

    container: str
    codec: str
    sample_format: str
    rates: frozenset[int] | None = None  # None: any rate
    max_channels: int = MAX_CHANNELS
    bytes_per_sample: float = 2.0  # upper bound, for the free-space check


MP3_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
# .ogg holds FLAC: Vorbis in FFmpeg is stereo-only and pads the end, so it would change channels and length
OUTPUT_FORMATS = {
    ".wav": OutputFormat("wav", "pcm_s16le", "s16"),
    ".flac": OutputFormat("flac", "flac", "s16"),
    ".ogg": OutputFormat("ogg", "flac", "s16"),
    ".mp3": OutputFormat("mp3", "libmp3lame", "fltp", MP3_RATES, 2, 0.1),
}


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about the first audio stream."""

    path: Path
    sample_rate: int
    channels: int
    layout: str
    codec: str
    declared_samples: int | None  # per channel, when the container announces a duration


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise ImageError(f"no such file: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not a sound file")
    try:
        return av.open(str(path), "r")
    except av.error.FFmpegError as exc:
        raise ImageError(
            f"{path} is not a sound or video file FFmpeg can read (corrupt or unsupported format)"
        ) from exc


def _stream(container: av.container.InputContainer, path: Path) -> av.audio.stream.AudioStream:
    if not container.streams.audio:
        raise ImageError(f"{path} has no audio stream")
    stream = container.streams.audio[0]
    if stream.codec_context is None:
        raise ImageError(f"{path}: no decoder for its audio codec")
    return stream


def probe(path: str | Path) -> AudioInfo:
    """Open the first audio stream and check it can be dreamed: a readable file, a sane rate and layout."""
    path = Path(path)
    with _open(path) as container:
        stream = _stream(container, path)
        rate, channels = stream.rate or 0, stream.channels or 0
        if not MIN_RATE <= rate <= MAX_RATE:
            raise ImageError(f"{path}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
        if not 1 <= channels <= MAX_CHANNELS:
            raise ImageError(f"{path}: {channels} channels (1-{MAX_CHANNELS} supported)")
        if container.format.name == "wav":
            data = _riff_data_bytes(path)
            bits = stream.codec_context.bit_rate or 0  # WAV codecs are constant bit rate
            declared = data * 8 * rate // bits if data and bits else None
        elif stream.duration is not None and stream.time_base is not None:
            declared = round(float(stream.duration * stream.time_base) * rate)
        elif container.duration is not None:
            declared = round(container.duration / av.time_base * rate)
        else:
            declared = None
        return AudioInfo(path, rate, channels, stream.layout.name, stream.codec_context.name, declared)


def _riff_data_bytes(path: Path) -> int | None:
    """The size a WAV header gives its sample data (FFmpeg trusts the file size instead, so a truncated WAV
    would pass unnoticed)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        size = int.from_bytes(head[pos + 4 : pos + 8], "little")
        if head[pos : pos + 4] == b"data":
            return None if size in (0, 0xFFFFFFFF) else size  # RF64 and streamed WAVs leave it open
        pos += 8 + size + (size & 1)
    return None


def read_blocks(info: AudioInfo) -> Iterator[np.ndarray]:
    """The whole stream as float32 blocks (channels x samples), at its own rate and layout.

    Samples travel interleaved ('flt', one plane): PyAV miscounts the planes of planar audio with 8 channels
    (9 planes, and `to_ndarray` reads past the end: a segfault)."""
    with _open(info.path) as container:
        stream = _stream(container, info.path)
        resampler = av.AudioResampler(format="flt", layout=stream.layout, rate=info.sample_rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    yield from _split(_planar(out))
            for out in resampler.resample(None):
                yield from _split(_planar(out))
        except av.error.FFmpegError as exc:
            raise ImageError(f"cannot decode {info.path}: the file is corrupt ({exc})") from exc


def _planar(frame: av.AudioFrame) -> np.ndarray:
    """An interleaved float frame as channels x samples."""
    return frame.to_ndarray().reshape(-1, frame.layout.nb_channels).T


def _interleaved(block: np.ndarray, info: AudioInfo) -> av.AudioFrame:
    """channels x samples float32 as one interleaved frame (see read_blocks: never planar)."""
    data = np.ascontiguousarray(np.asarray(block, np.float32).T).reshape(1, -1)
    return av.AudioFrame.from_ndarray(data, format="flt", layout=info.layout)


def check_length(info: AudioInfo, samples: int) -> None:
    """Refuse a stream that decoded to nothing, or to much less than its header announces (a truncated file):
    every reader of whole files (the dream's scan, the zoom's envelope) calls this after its pass."""
    if samples == 0:
        raise ImageError(f"{info.path} holds no audio samples")
    declared = info.declared_samples
    if declared and samples < TRUNCATED * declared:
        raise ImageError(
            f"{info.path} is truncated: {samples / info.sample_rate:.2f} s decoded of the "
            f"{declared / info.sample_rate:.2f} s its header announces"
        )


def read_all(info: AudioInfo) -> np.ndarray:
    """The whole stream as one float32 array (channels x samples): for short files and measurements."""
    blocks = list(read_blocks(info))
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((info.channels, 0), np.float32)


def _split(block: np.ndarray) -> Iterator[np.ndarray]:
    block = np.asarray(block, dtype=np.float32).reshape(block.shape[0], -1)
    for i in range(0, block.shape[1], BLOCK):
        yield block[:, i : i + BLOCK]


def windows(blocks: Iterable[np.ndarray], length: int, overlap: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """(start, C x n) windows of `length` samples every `length - overlap`; the last one may be shorter."""
    step, buf, start = length - overlap, None, 0
    for block in blocks:
        buf = block if buf is None else np.concatenate([buf, block], axis=1)
        while buf.shape[1] > length:  # more follows this window
            yield start, buf[:, :length]
            buf, start = buf[:, step:], start + step
    if buf is not None and buf.shape[1]:
        yield start, buf


def output_format(path: Path) -> OutputFormat:
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"unknown audio output format '{path.suffix}' for {path} (use {', '.join(OUTPUT_FORMATS)})")
    return fmt


def check_output(path: str | Path, info: AudioInfo, *, force: bool = False, inputs: tuple = ()) -> Path:
    """Validate an output path before any work: a known format that can hold the input's rate and channels."""
    path = Path(path)
    fmt = output_format(path)
    if fmt.rates is not None and info.sample_rate not in fmt.rates:
        raise OutputError(f"{path.suffix} cannot store {info.sample_rate} Hz (write .flac or .wav)")
    if info.channels > fmt.max_channels:
        raise OutputError(f"{path.suffix} cannot store {info.channels} channels (write .flac or .wav)")
    return check_writable(path, force=force, inputs=inputs)


def write_audio(path: Path, blocks: Iterable[np.ndarray], info: AudioInfo, fmt: OutputFormat, metadata: str) -> None:
    """Encode float32 blocks (channels x samples, in [-1, 1]) at the input's rate and layout."""
    try:
        with av.open(str(path), "w", format=fmt.container) as container:
            # WAV keeps only the standard INFO tags, so the settings also go into `comment`
            container.metadata[METADATA_KEY] = metadata
            container.metadata["comment"] = metadata
            stream = container.add_stream(fmt.codec, rate=info.sample_rate, layout=info.layout)
            resampler = av.AudioResampler(format=fmt.sample_format, layout=info.layout, rate=info.sample_rate)
            written = 0
            for block in blocks:
                frame = _interleaved(block, info)
                # timestamps in samples: the Ogg muxer refuses packets without them
                frame.sample_rate, frame.pts, frame.time_base = info.sample_rate, written, Fraction(1, info.sample_rate)
                written += frame.samples
                for out in resampler.resample(frame):
                    container.mux(stream.encode(out))
            for out in resampler.resample(None):
                container.mux(stream.encode(out))
            container.mux(stream.encode(None))
    except av.error.FFmpegError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc


def read_metadata(path: str | Path) -> dict | None:
    """The JSON object `write_audio` stored (keys 'deepdream' and 'audio'), or None."""
    path = Path(path)
    with _open(path) as container:
        tags = dict(container.metadata)
        for stream in container.streams.audio[:1]:
            tags.update(stream.metadata)  # Ogg keeps its tags on the stream
    for key in (METADATA_KEY, "comment"):
        try:
            data = json.loads(tags.get(key, ""))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get(METADATA_KEY), dict):
            return data
    return None
