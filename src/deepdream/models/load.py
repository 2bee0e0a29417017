"""Load a backbone by registry name or from a trained checkpoint, onto a device."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SettingsError
from ..runtime import resolve_device
from ..settings import Settings
from .backbone import Backbone
from .checkpoint import backbone_from_checkpoint
from .registry import DEFAULT_BACKBONE, build_backbone


def load_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    channels_last: bool = True,
) -> Backbone:
    """Build a registered backbone, `timm:NAME` / `torchvision:NAME`, or a trained checkpoint, on a device,
    frozen and in eval mode."""
    if checkpoint is not None and weights is not None:
        raise SettingsError("give either --weights or --checkpoint, not both: each is a complete set of weights")
    if checkpoint is not None:
        backbone = backbone_from_checkpoint(checkpoint)
    else:
        backbone = build_backbone(name, pretrained, Path(weights) if weights else None)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    backbone.model.to(device=device, memory_format=memory_format)
    return backbone


def backbone_from_settings(settings: Settings, backbone: Backbone | None = None) -> Backbone:
    """The backbone the settings name (model, weights or checkpoint, device), unless one is given."""
    if backbone is not None:
        return backbone
    return load_backbone(
        settings.model, weights=settings.weights, checkpoint=settings.checkpoint, device=resolve_device(settings.device)
    )
