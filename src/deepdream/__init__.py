"""deepdream: DeepDream done right, offline out of the box.

The public API: `dream()` for one picture, `Dreamer` with objective values for tensors, the backbone
registry, settings and presets, and the error types.
"""

from .audio import dream_audio
from .engine.objectives import Channels, ClassLogProb, Energy, Guide, Objective, build_objective
from .engine.octaves import Dreamer
from .errors import DeepDreamError, ImageError, ModelError, OutputError, SettingsError, WeightsUnavailable
from .models.backbone import Backbone
from .models.load import load_backbone
from .models.registry import list_backbones
from .runtime import resolve_device
from .settings import PRESETS, Settings, preset
from .still import dream
from .text import dream_text

__all__ = [
    "Backbone",
    "Channels",
    "ClassLogProb",
    "DeepDreamError",
    "Dreamer",
    "Energy",
    "Guide",
    "ImageError",
    "ModelError",
    "Objective",
    "OutputError",
    "PRESETS",
    "Settings",
    "SettingsError",
    "WeightsUnavailable",
    "build_objective",
    "dream",
    "dream_audio",
    "dream_text",
    "list_backbones",
    "list_layers",
    "load_backbone",
    "preset",
    "resolve_device",
]


def list_layers(backbone: Backbone) -> list[str]:
    """Dotted layer names in forward order (a position in this list is a layer index)."""
    return backbone.layer_names()
