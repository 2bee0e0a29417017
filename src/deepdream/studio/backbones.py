"""Networks for the studio: the model list (registry + trained checkpoints), loaded backbones kept
between dreams, and each network's layer table (name, output shape, recommended)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.taps import Taps
from ..models.backbone import Backbone
from ..models.load import backbone_from_settings
from ..models.registry import list_backbones
from ..runtime import resolve_device
from ..settings import Settings
from .form import CHECKPOINT

KEEP = 2  # loaded networks kept in memory (the default one and the last other)


@dataclass(frozen=True)
class Layer:
    name: str
    shape: str  # C x H x W at 224 px (or the network's minimum size)
    recommended: bool

    @property
    def label(self) -> str:
        return f"{'★ ' if self.recommended else ''}{self.name}  ({self.shape})"


def layer_table(backbone: Backbone) -> list[Layer]:
    """Every layer with its output shape on a square input: what `deepdream layers` prints."""
    names = backbone.layer_names()
    size = max(224, backbone.min_size)
    with Taps(backbone.model, names) as taps, torch.no_grad():
        acts = taps(torch.zeros(1, 3, size, size, device=backbone.device))
    shape = {name: "x".join(map(str, a.shape[1:])) for name, a in acts.items()}
    return [Layer(name, shape.get(name, "-"), name in backbone.recommended_layers) for name in names]


def cached_timm_models() -> list[str]:
    """timm:NAME of every timm model whose weights are in the Hugging Face cache (they load offline)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    cache = Path(HF_HUB_CACHE)
    if not cache.is_dir():
        return []
    return sorted(f"timm:{p.name.removeprefix('models--timm--')}" for p in cache.glob("models--timm--*"))


class Backbones:
    """Loaded networks by (model, weights, checkpoint, device), the last few kept; thread-safe."""

    def __init__(self, runs: str | Path | None = "runs"):
        self.runs = Path(runs) if runs else None
        self._lock = threading.Lock()
        self._loaded: OrderedDict[tuple, tuple[Backbone, list[Layer]]] = OrderedDict()

    def choices(self) -> list[tuple[str, str]]:
        """(label, value) for the model list: registered backbones, then checkpoints under runs/."""
        items = [(name, name) for name in list_backbones()]
        items += [(f"{name} (cached)", name) for name in cached_timm_models()]
        if self.runs is not None and self.runs.is_dir():
            for path in sorted(self.runs.glob("**/*.pt")):
                items.append((f"{path.relative_to(self.runs.parent)} (trained)", CHECKPOINT + str(path.resolve())))
        return items

    @staticmethod
    def _key(settings: Settings) -> tuple:
        return settings.model, settings.weights, settings.checkpoint, str(resolve_device(settings.device))

    def keep(self, settings: Settings, backbone: Backbone) -> None:
        """Use an already loaded network for these settings (tests and benchmarks share theirs)."""
        with self._lock:
            self._loaded[self._key(settings)] = (backbone, layer_table(backbone))

    def _load(self, settings: Settings) -> tuple[Backbone, list[Layer]]:
        key = self._key(settings)
        with self._lock:
            if key not in self._loaded:
                backbone = backbone_from_settings(settings)
                self._loaded[key] = (backbone, layer_table(backbone))
                while len(self._loaded) > KEEP:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(key)
            return self._loaded[key]

    def get(self, settings: Settings) -> Backbone:
        return self._load(settings)[0]

    def layers(self, settings: Settings) -> list[Layer]:
        return self._load(settings)[1]
