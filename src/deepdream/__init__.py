"""deepdream: DeepDream done right, offline out of the box."""

from .backbones import Backbone, list_backbones, load_backbone
from .dream import Dreamer, build_objective, dream, resolve_device
from .errors import DeepDreamError, ImageError, ModelError, OutputError, SettingsError, WeightsUnavailable
from .settings import PRESETS, Settings, preset

__all__ = [
    "Backbone",
    "DeepDreamError",
    "Dreamer",
    "ImageError",
    "ModelError",
    "OutputError",
    "PRESETS",
    "Settings",
    "SettingsError",
    "WeightsUnavailable",
    "build_objective",
    "dream",
    "list_backbones",
    "list_layers",
    "load_backbone",
    "preset",
    "resolve_device",
]


def list_layers(backbone: Backbone) -> list[str]:
    """Dotted layer names in forward order (a position in this list is a layer index)."""
    return backbone.layer_names()
