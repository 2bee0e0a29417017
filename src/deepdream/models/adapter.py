"""Any image classifier as a Backbone: layouts probed, recommended taps and the smallest input chosen
from what the network computes, not from its name (shared by the timm and torchvision adapters)."""

from __future__ import annotations

import math

from torch import nn

from .backbone import Backbone, list_layer_names
from .layouts import Probe, attach, probe

RECOMMENDED = 6  # layers `deepdream layers` marks and the sweep uses by default
# activation modules whose output is a transformer MLP's hidden layer (Ghiasi et al. 2022 tap these)
ACTIVATIONS = (nn.GELU, nn.ReLU, nn.SiLU, nn.Hardswish, nn.ReLU6, nn.Mish)
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def spatial_backbone(
    name: str,
    model: nn.Module,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    size: tuple[int, int],
    categories: tuple[str, ...],
    source: str,
) -> Backbone:
    """A frozen classifier as a Backbone; `size` (H, W) is its own input size, where probing starts."""
    found = probe(model, name, size)
    attach(model, found, name)
    blocks = [n for n in list_layer_names(model) if n in found.strides]
    recommended = recommended_layers(model, found, blocks)
    min_size = max(32, max((found.strides[n] for n in blocks), default=32))
    return Backbone(
        name=name,
        model=model,
        mean=_rgb(mean),
        std=_rgb(std),
        categories=categories,
        recommended_layers=tuple(recommended),
        min_size=min_size,
        source=source,
        fixed_size=found.fixed_size,
    )


def _rgb(values: tuple[float, ...]) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    return (values * 3)[:3] if len(values) == 1 else values[:3]  # type: ignore[return-value]


def recommended_layers(model: nn.Module, found: Probe, blocks: list[str]) -> list[str]:
    """Good taps: the blocks at 1/16 of the input (then 1/8, 1/32, ...), two thirds deep first.

    A block whose output is tokens or channels-last (a transformer block or stage) is tapped at its MLP's
    hidden neurons instead, the activation after the expanding linear layer (Ghiasi et al. 2022), not q/k/v.
    """
    modules = dict(model.named_modules())
    # the innermost listed blocks that compute something (no identities, no lone norms)
    blocks = [
        b
        for b in blocks
        if not any(o.startswith(b + ".") for o in blocks)
        and any(True for _ in modules[b].parameters())
        and not isinstance(modules[b], NORMS)
    ]
    by_stride: dict[int, list[str]] = {}
    for block in blocks:
        by_stride.setdefault(found.strides[block], []).append(block)
    ranked: list[str] = []
    for stride in sorted(by_stride, key=lambda s: (abs(math.log2(s / 16)), -s)):
        group = by_stride[stride]
        ranked += sorted(group, key=lambda b: (abs(group.index(b) - _two_thirds(group)), -group.index(b)))
    return [_mlp_hidden(modules, found, b) or b for b in ranked][:RECOMMENDED]


def _two_thirds(items: list) -> float:
    return 2 * (len(items) - 1) / 3


def _mlp_hidden(modules: dict[str, nn.Module], found: Probe, block: str) -> str | None:
    """In a transformer block or stage, the MLP hidden activation two thirds deep; None for other blocks."""
    if block not in found.layouts:
        return None
    hidden = [
        n for n, m in modules.items() if n.startswith(block + ".") and isinstance(m, ACTIVATIONS) and n in found.strides
    ]
    return hidden[round(_two_thirds(hidden))] if hidden else None
