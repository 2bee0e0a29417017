"""Gaussian smoothing as a function plus an nn.Module whose kernel is built once.

The blur is a sum of shifted slices rather than a convolution: oneDNN pads a 1-channel convolution's
buffers to 16 channels, so blurring an 8K gradient with conv2d peaked at 4.3 GB; slices need one
temporary of the image's size and handle the borders without padded copies.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def gaussian_kernel1d(sigma: float, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian taps covering +-3 sigma."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def _blur_axis(src: torch.Tensor, taps: Sequence[float], dim: int, border: str, out: torch.Tensor | None = None):
    """out[i] = sum_j taps[j] * src[i + j - r] along `dim`, with the border rule for sources outside."""
    n = src.shape[dim]
    r = len(taps) // 2
    out = torch.mul(src, taps[r], out=out)  # the centre tap initialises the sum: no zeroing pass
    for j, w in enumerate(taps):
        s = j - r
        lo, hi = min(n, max(0, -s)), max(0, min(n, n - s))  # positions whose source i + s is inside
        if s != 0 and lo < hi:
            out.narrow(dim, lo, hi - lo).add_(src.narrow(dim, lo + s, hi - lo), alpha=w)
        if border == "replicate":  # sources outside repeat the edge row/column
            if lo > 0:
                out.narrow(dim, 0, lo).add_(src.narrow(dim, 0, 1), alpha=w)
            if hi < n:
                out.narrow(dim, hi, n - hi).add_(src.narrow(dim, n - 1, 1), alpha=w)
    if border == "normalized":  # average over the sources inside: only the r positions at each end lack some
        for start, length in [(0, n)] if n <= 2 * r else [(0, r), (n - r, r)]:
            mass = torch.tensor(_inside_mass(n, taps, start, length), device=src.device, dtype=src.dtype)
            out.narrow(dim, start, length).div_(mass if dim == -1 else mass.view(length, 1))
    return out


def _inside_mass(n: int, taps: Sequence[float], start: int, length: int) -> list[float]:
    """Sum of the taps whose source falls inside a length-n axis, at positions start..start+length-1."""
    r = len(taps) // 2
    return [sum(w for j, w in enumerate(taps) if 0 <= i + j - r < n) for i in range(start, start + length)]


def gaussian_blur(
    image: torch.Tensor, taps: Sequence[float], border: str = "normalized", out: torch.Tensor | None = None
) -> torch.Tensor:
    """Separable blur of B x C x H x W with 1-D taps (Python floats: no device round trip per call).

    border "normalized" averages over the pixels inside the image only, so gradients do not fade
    towards the edges (a faded band shows as a frame); "zeros" pads with zeros; "replicate" repeats
    the edge, for pictures, whose edges must not darken. `out` may be `image` itself.
    """
    return _blur_axis(_blur_axis(image, taps, -1, border), taps, -2, border, out=out)


class GaussianBlur(nn.Module):
    def __init__(self, sigma: float, border: str = "normalized"):
        super().__init__()
        self.sigma = sigma
        self.border = border
        self.taps = gaussian_kernel1d(sigma, torch.float64).tolist()

    def forward(self, image: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Blur; `inplace` writes the result over the input (one temporary of its size)."""
        return gaussian_blur(image, self.taps, self.border, out=image if inplace else None)
