"""Tiled gradients: the gradient of a spatial objective computed tile by tile, in bounded memory.

Each tile is run with a margin of context around its core; only the activations over the core are
scored, with the weight they have in the whole image, and the input gradients of all tiles are summed.
With enough margin this equals the untiled gradient; random tile offsets keep seams from lining up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from itertools import pairwise

import torch

from ..runtime import available_memory, saved_bytes
from .ascent import GradientFn, Shift, gradient, wrapped_index

ALIGN = 32  # tile cuts fall on multiples of the largest stride, so tiles partition activation grids exactly


@dataclass(frozen=True)
class Tile:
    core: tuple[int, int, int, int]  # y0, y1, x0, x1: the pixels this tile is responsible for
    pad: tuple[int, int, int, int]  # the core plus its margin, clipped to the image


def _cuts(length: int, tile: int, offset: int) -> list[int]:
    return sorted({0, length, *range(offset, length, tile)})


def tile_layout(height: int, width: int, tile: int, margin: int, offset: tuple[int, int] = (0, 0)) -> list[Tile]:
    """Tiles whose cores partition the image; cuts at offset + k * tile."""
    tiles = []
    for y0, y1 in pairwise(_cuts(height, tile, offset[0])):
        for x0, x1 in pairwise(_cuts(width, tile, offset[1])):
            pad = (max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin))
            tiles.append(Tile((y0, y1, x0, x1), pad))
    return tiles


def layer_strides(score_taps, device: torch.device, size: int = 256) -> dict[str, int]:
    """Input pixels per activation position of each tapped layer, from one small probe forward."""
    with torch.no_grad():
        acts = score_taps(torch.zeros(1, 3, size, size, device=device))
    return {name: max(1, round(size / a.shape[-1])) for name, a in acts.items() if a.dim() == 4}


def position_weights(acts, strides: dict[str, int], tile: Tile, height: int, width: int) -> dict[str, torch.Tensor]:
    """Per-layer H x W weights: 1 / (positions in the whole image) over the tile's core, 0 elsewhere."""
    (cy0, cy1, cx0, cx1), (py0, _, px0, _) = tile.core, tile.pad
    weights = {}
    for name, a in acts.items():
        s = strides[name]
        h, w = a.shape[-2:]
        mask = torch.zeros(h, w, device=a.device, dtype=torch.float32)
        r0, r1 = (cy0 - py0) // s, min(h, math.ceil((cy1 - py0) / s))
        c0, c1 = (cx0 - px0) // s, min(w, math.ceil((cx1 - px0) / s))
        mask[r0:r1, c0:c1] = 1.0 / (math.ceil(height / s) * math.ceil(width / s))
        weights[name] = mask
    return weights


def margin_for(strides: dict[str, int]) -> int:
    """Context around a tile: 8 positions of the coarsest tapped layer (gradient error ~1%, see tests)."""
    return 8 * max(strides.values(), default=ALIGN)


def fits_one_tile(height: int, width: int, tile: int, margin: int) -> bool:
    """Whether an image has no more pixels than one padded tile (its gradient is then one pass)."""
    return height * width <= (tile + 2 * margin) ** 2 or max(height, width) <= tile


def tiled_gradient(score, strides: dict[str, int], tile: int, margin: int, generator: torch.Generator) -> GradientFn:
    """Gradient of a spatial objective, in tiles when the image has more pixels than one padded tile."""
    whole = gradient(score)

    def tile_gradient(window: torch.Tensor, t: Tile, height: int, width: int) -> torch.Tensor:
        """Gradient over a tile's padded window, cut from the rolled height x width image."""
        x = window.detach().requires_grad_(True)
        weights = partial(position_weights, strides=strides, tile=t, height=height, width=width)
        (g,) = torch.autograd.grad(score(x, weights).sum(), x)
        return g

    def grad(image: torch.Tensor, shift: Shift = (0, 0)) -> torch.Tensor:
        height, width = image.shape[-2:]
        if fits_one_tile(height, width, tile, margin):
            return whole(image, shift)
        offset = (torch.randint(0, tile // ALIGN, (2,), generator=generator) * ALIGN).tolist()
        total = torch.zeros_like(image)
        for t in tile_layout(height, width, tile, margin, tuple(offset)):
            # tiles are laid out on the rolled image and cut from the original through wrapped index
            # vectors, so no rolled full-size copy of the image or of the gradient is ever made
            rows = wrapped_index(t.pad[0], t.pad[1], shift[0], height, image.device)
            cols = wrapped_index(t.pad[2], t.pad[3], shift[1], width, image.device)
            g = tile_gradient(image.detach().index_select(-2, rows).index_select(-1, cols), t, height, width)
            total.permute(2, 3, 0, 1).index_put_((rows[:, None], cols[None, :]), g.permute(2, 3, 0, 1), accumulate=True)
        return total

    return grad


def bytes_per_pixel(score_taps, device: torch.device, size: int = 128) -> float:
    """Bytes the backward pass keeps per input pixel: tensors saved by autograd (each storage once,
    weights excluded), from one probe forward. A whole fwd+bwd peaked within 4% of this (lite0, 1080p)."""
    x = torch.zeros(1, 3, size, size, device=device, requires_grad=True)
    return saved_bytes(score_taps, score_taps.model, x.contiguous(memory_format=torch.channels_last)) / (size * size)


def memory_budget(device: torch.device, reserved: int = 0) -> int:
    """Bytes of activations one tile may use: a share of free memory, less `reserved` for the full-size
    tensors that live beside it; capped on the CPU so an 8K dream stays under 6 GB (benchmarks/memory.py)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.4) - reserved
    return int(min(available_memory() * 0.2, 2.5 * (1 << 30))) - reserved


def auto_tile_size(bytes_per_px: float, budget: int, margin: int) -> int:
    """Largest aligned tile core whose padded tile fits the budget (+20% for backward temporaries)."""
    pixels = max(budget, 0) / (1.2 * bytes_per_px)
    side = int(math.sqrt(pixels)) - 2 * margin
    return max(4 * ALIGN, min(4096, side // ALIGN * ALIGN))
