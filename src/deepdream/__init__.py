"""deepdream: DeepDream done right, offline out of the box.

The public API: each job's entry point (`dream` for one picture, `dream_video`, `dream_zoom`, `dream_audio`,
`layer_sweep` and `channel_atlas` for sheets, `fit` to train a classifier), `Dreamer` with objective values
for tensors, the backbone registry, settings and presets, and the error types. Plumbing (devices,
precision, files) stays in its modules: `deepdream.runtime`, `deepdream.imagefiles`.
"""

from .audio import dream_audio
from .engine.objectives import Channels, ClassLogProb, Energy, Guide, Objective, build_objective
from .engine.octaves import Dreamer
from .errors import (
    DatasetError,
    DeepDreamError,
    ImageError,
    ModelError,
    NonFiniteError,
    OutputError,
    SettingsError,
    VideoError,
    WeightsUnavailable,
)
from .explore import channel_atlas, layer_sweep
from .models.backbone import Backbone
from .models.load import load_backbone
from .models.registry import list_backbones
from .settings import PRESETS, Settings, preset
from .still import dream
from .text import dream_text
from .training.run import fit
from .video import dream_video, dream_zoom

__all__ = [
    "Backbone",
    "Channels",
    "ClassLogProb",
    "DatasetError",
    "DeepDreamError",
    "Dreamer",
    "Energy",
    "Guide",
    "ImageError",
    "ModelError",
    "NonFiniteError",
    "Objective",
    "OutputError",
    "PRESETS",
    "Settings",
    "SettingsError",
    "VideoError",
    "WeightsUnavailable",
    "build_objective",
    "channel_atlas",
    "dream",
    "dream_audio",
    "dream_text",
    "dream_video",
    "dream_zoom",
    "fit",
    "layer_sweep",
    "list_backbones",
    "list_layers",
    "load_backbone",
    "preset",
]


def list_layers(backbone: Backbone) -> list[str]:
    """Dotted layer names in forward order (a position in this list is a layer index)."""
    return backbone.layer_names()
