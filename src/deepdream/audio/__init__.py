"""Dream sounds: a sound file becomes a spectrogram picture, the engine dreams it, and the new magnitudes
are resynthesised (io.py files, spectro.py STFT <-> picture, dreaming.py the windowed job, plot.py the
before/after figure)."""

from .dreaming import AudioOptions, AudioResult, dream_audio
from .io import OUTPUT_FORMATS, AudioInfo, probe, read_metadata
from .spectro import PHASES, Scale, Spectrogram

__all__ = [
    "AudioInfo",
    "AudioOptions",
    "AudioResult",
    "OUTPUT_FORMATS",
    "PHASES",
    "Scale",
    "Spectrogram",
    "dream_audio",
    "probe",
    "read_metadata",
]
