"""Typed exceptions: library code raises these, only the CLI turns them into messages and exit codes."""


class DeepDreamError(Exception):
    """Base class of every error the toolkit reports to a user."""


class ImageError(DeepDreamError):
    """An input image or video cannot be read or is unusable."""


class VideoError(ImageError):
    """An input video cannot be used: not a video, no video stream, no frames, or no decoder for its codec."""


class OutputError(DeepDreamError):
    """An output path cannot be written (exists, is the input, unwritable, unknown format)."""


class ModelError(DeepDreamError):
    """Unknown backbone, layer or class, or a weights file that does not fit."""


class WeightsUnavailable(ModelError):
    """Pretrained weights are neither cached nor downloadable."""


class SettingsError(DeepDreamError):
    """Invalid dream settings, preset or config file."""


class DatasetError(DeepDreamError):
    """A data folder that does not have the expected layout, or has no usable images."""


class NonFiniteError(DeepDreamError):
    """A loss, objective, gradient or picture became NaN or infinite: the result would be garbage."""


class Cancelled(Exception):
    """Someone asked a running job to stop; raised from its progress updates. Not a DeepDreamError: it is
    no fault to report, and handlers of failures must let it through."""


class TextError(DeepDreamError):
    """An input text, start sentence or corpus file cannot be read or is unusable."""
