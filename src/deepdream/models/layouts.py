"""How each layer's output becomes a picture-shaped B x C x H x W map, found by probing, never by name.

CNN layers already give B x C x H x W. Vision Transformers give tokens, B x N x C (class or register
tokens first, then one per patch), and Swin or ConvNeXt's MLPs give channels last, B x H x W x C.
A probe at two input sizes tells them apart: the dimensions that change with the input are spatial,
the one that stays is the channel. The layouts are kept on the model (`LAYOUTS_ATTR`), so every
`Taps` on it, and every copy of it (batch-norm folding), reshapes the same way and the engine never
learns which network it is reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from ..errors import ModelError, SettingsError

LAYOUTS_ATTR = "_deepdream_layouts"  # name -> Layout, for layers that are not already B x C x H x W


@dataclass(frozen=True)
class Layout:
    """A layer's output layout: 'nhwc' (channels last) or 'tokens' (`prefix` non-patch tokens first)."""

    kind: str
    prefix: int = 0

    def to_map(self, output: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """B x C x h x w view of this layer's output for an input of `size` (H, W)."""
        return _TO_MAP[self.kind](self, output, size)


def _channels_last(layout: Layout, output: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return output.permute(0, 3, 1, 2)  # B x H x W x C -> B x C x H x W


def _tokens(layout: Layout, output: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    patches = output[:, layout.prefix :]  # B x (h*w) x C, class/register tokens dropped
    h, w = patch_grid(patches.shape[1], size)
    return patches.transpose(1, 2).reshape(output.shape[0], output.shape[2], h, w)  # B x C x h x w


_TO_MAP: dict[str, Callable[[Layout, torch.Tensor, tuple[int, int]], torch.Tensor]] = {
    "nhwc": _channels_last,
    "tokens": _tokens,
}


def patch_grid(count: int, size: tuple[int, int]) -> tuple[int, int]:
    """The h x w grid of `count` patch tokens from an H x W input (patches cut at one stride, floor or ceil)."""
    height, width = size
    for stride in range(1, max(height, width) + 1):
        for h, w in ((height // stride, width // stride), (-(-height // stride), -(-width // stride))):
            if h * w == count:
                return h, w
        if (height // stride) * (width // stride) < count // 4:
            break
    raise ModelError(f"{count} tokens do not form a patch grid of a {width}x{height} input")


def layouts_of(model: nn.Module) -> Mapping[str, Layout]:
    return getattr(model, LAYOUTS_ATTR, {})


def _outputs(model: nn.Module, height: int, width: int, device: torch.device) -> dict[str, tuple[int, ...]]:
    """Output shape of every named module (the first tensor of a tuple) for a 1 x 3 x height x width input."""
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name):
        def record(module, inputs, output):
            if isinstance(output, (tuple, list)) and output:
                output = output[0]
            if torch.is_tensor(output):
                shapes[name] = tuple(output.shape)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width, device=device))
    finally:
        for h in handles:
            h.remove()
    return shapes


@dataclass(frozen=True)
class Probe:
    """What probing found: layouts of the layers not already B x C x H x W, input pixels per position of
    every spatial layer, and the one input size a fixed-size network takes (None: any size)."""

    layouts: dict[str, Layout]
    strides: dict[str, int]
    fixed_size: tuple[int, int] | None


def probe(model: nn.Module, name: str, size: tuple[int, int]) -> Probe:
    """Probe a network at half its own input width and at its own size (H, W); ModelError if nothing is spatial.

    A network that fails at the narrower size takes only its own: its layouts come from one probe there.
    """
    device = next(model.parameters()).device
    narrow, full = (size[0], max(1, size[1] // 2)), size
    try:
        first, second = _outputs(model, *narrow, device), _outputs(model, *full, device)
        fixed = None
    except Exception:
        try:
            first, second, narrow, fixed = _outputs(model, *full, device), None, full, full
        except Exception as exc:  # the network's own message, e.g. a wrong channel count
            message = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(f"{name} does not take a 3 x {full[0]} x {full[1]} picture: {message}") from None
    layouts: dict[str, Layout] = {}
    strides: dict[str, int] = {}
    for layer, a in first.items():
        found = _classify(a, second.get(layer) if second is not None else None, narrow, full)
        if found is not None:
            strides[layer] = found[1]
            if found[0] is not None:
                layouts[layer] = found[0]
    if not strides:
        raise ModelError(f"{name} has no spatial features (no layer gives a map over the picture): it cannot dream")
    return Probe(layouts, strides, fixed)


def _grid_stride(hw: tuple[int, int], size: tuple[int, int]) -> int | None:
    """Input pixels per position when an h x w map covers an H x W input (both sides agree), else None."""
    (h, w), (height, width) = hw, size
    if h < 1 or w < 1:
        return None
    stride = height / h
    return max(1, round(stride)) if abs(w - width / stride) <= 1 else None


def _classify(a: tuple[int, ...], b: tuple[int, ...] | None, size: tuple[int, int], wide: tuple[int, int]):
    """(layout, stride) of a layer from its output shapes at a `size` probe and a `wide` one (same height,
    wider); the layout is None for a map already B x C x H x W; None when the output is not spatial."""
    if len(a) == 4:
        changed = None if b is None else [i for i in (1, 2, 3) if a[i] != b[i]]
        if changed is None or changed == [3]:  # channels first: only the width follows the input's width
            stride = _grid_stride((a[2], a[3]), size)
            if stride is not None:
                return None, stride
        if changed is None or changed == [2]:
            stride = _grid_stride((a[1], a[2]), size)
            if stride is not None:
                return Layout("nhwc"), stride
        return None
    if len(a) == 3 and (b is None or b[1] != a[1]):
        # the prefix (class, register, distillation tokens) is the count that leaves a patch grid at both sizes
        for prefix in range(min(a[1], 17)):
            grid = _grid_or_none(a[1] - prefix, size)
            if grid is not None and (b is None or _grid_or_none(b[1] - prefix, wide) is not None):
                return Layout("tokens", prefix), max(1, round(size[0] / grid[0]))
    return None


def _grid_or_none(count: int, size: tuple[int, int]) -> tuple[int, int] | None:
    try:
        return patch_grid(count, size)
    except ModelError:
        return None


def attach(model: nn.Module, found: Probe, name: str) -> nn.Module:
    """Keep the layouts on the model; a fixed-size network refuses another size in one line."""
    object.__setattr__(model, LAYOUTS_ATTR, dict(found.layouts))
    if found.fixed_size is not None:
        fixed = found.fixed_size

        def refuse(module, args):
            x = args[0] if args else None
            if torch.is_tensor(x) and tuple(x.shape[-2:]) != fixed:
                raise SettingsError(
                    f"{name} takes only {fixed[1]}x{fixed[0]} pictures (its position embeddings do not interpolate), "
                    f"not {x.shape[-1]}x{x.shape[-2]}; choose a model that takes any size"
                )

        model.register_forward_pre_hook(refuse)
    return model
