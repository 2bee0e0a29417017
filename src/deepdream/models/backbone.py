"""A network ready for dreaming: its model, preprocessing, categories, good layers, and layer names."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError
from ..hints import did_you_mean

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """A network ready for dreaming: eval mode, frozen, with what is needed to feed and read it."""

    name: str
    model: nn.Module
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    categories: tuple[str, ...] = ()
    recommended_layers: tuple[str, ...] = ()
    min_size: int = 32  # smallest input side the network accepts
    source: str = ""
    fixed_size: tuple[int, int] | None = None  # (H, W) of a network that takes no other size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Map an RGB image in [0, 1] (B x 3 x H x W) to the network's input space."""
        mean = torch.tensor(self.mean, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        return (image - mean) / std

    def layer_names(self) -> list[str]:
        """Dotted names that `deepdream layers` lists, in forward order; a position is a layer index."""
        return list_layer_names(self.model)

    def resolve_layer(self, spec: str) -> str:
        """Return the dotted module name for a name or an index into `layer_names()`."""
        names = self.layer_names()
        if spec.lstrip("-").isdigit():
            index = int(spec)
            if not 0 <= index < len(names):
                raise ModelError(f"layer index {index} is out of range for {self.name} (0..{len(names) - 1})")
            return names[index]
        if spec in dict(self.model.named_modules()) and spec:
            return spec
        hint = did_you_mean(spec, names, fallback=f"; it has {len(names)} listed layers (index 0..{len(names) - 1})")
        raise ModelError(f"unknown layer '{spec}' for {self.name}{hint}")

    def resolve_class(self, spec: str | int) -> int:
        """Return the output index of a class given by name (case-insensitive) or index."""
        text = str(spec).strip()
        if text.isdigit():
            index = int(text)
            if index >= len(self.categories):
                raise ModelError(f"class index {index} is out of range for {self.name} (0..{len(self.categories) - 1})")
            return index
        lowered = [c.lower() for c in self.categories]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        hint = did_you_mean(text.lower(), lowered, cutoff=0.6, show=lambda c: repr(self.categories[lowered.index(c)]))
        raise ModelError(f"unknown class '{text}' for {self.name}{hint}")


def list_layer_names(model: nn.Module) -> list[str]:
    """Walk the module tree in registration order; containers come after their children.

    Sequential/ModuleList containers are expanded, everything else is a layer of its own. For
    InceptionV3 the positions equal the reference design's `layer_idx` (its children), for VGG
    `features.N` sits at position N.
    """
    names: list[str] = []

    def walk(module: nn.Module, prefix: str) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                walk(child, name + ".")
            names.append(name)

    walk(model, "")
    return names


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
