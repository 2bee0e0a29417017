"""Gaussian smoothing as a function plus an nn.Module whose kernel is built once."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel1d(sigma: float, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian taps covering +-3 sigma."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def _inside_mass(n: int, kernel: torch.Tensor) -> torch.Tensor:
    """Share of the kernel that falls inside a length-n axis, at each position."""
    r = kernel.numel() // 2
    return F.conv1d(kernel.new_ones(1, 1, n), kernel.view(1, 1, -1), padding=r).view(n)


def gaussian_blur(
    image: torch.Tensor, kernel: torch.Tensor, border: str = "normalized", out: torch.Tensor | None = None
) -> torch.Tensor:
    """Separable depthwise blur of B x C x H x W with a 1-D kernel.

    border "normalized" averages over the pixels inside the image only: zero padding happens inside the
    convolution (no padded copies: gradients at 8K are 400 MB each) and each pass is divided by the kernel
    mass that fell inside, so gradients do not fade towards the edges (a faded band shows as a frame).
    "replicate" pads pictures, whose edges must not darken. With `out` (which may be `image` itself) the
    result is written one channel at a time, so temporaries hold one channel only.
    """
    h, w = image.shape[-2:]
    r = kernel.numel() // 2
    k = kernel.to(image.dtype)
    kx, ky = k.view(1, 1, 1, -1), k.view(1, 1, -1, 1)
    if border == "normalized":
        mass_w, mass_h = _inside_mass(w, k), _inside_mass(h, k).view(h, 1)

        def blur(x: torch.Tensor) -> torch.Tensor:
            c = x.shape[1]
            x = F.conv2d(x, kx.expand(c, 1, 1, -1), padding=(0, r), groups=c).div_(mass_w)
            return F.conv2d(x, ky.expand(c, 1, -1, 1), padding=(r, 0), groups=c).div_(mass_h)

    else:

        def blur(x: torch.Tensor) -> torch.Tensor:
            c = x.shape[1]
            x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=border), kx.expand(c, 1, 1, -1), groups=c)
            return F.conv2d(F.pad(x, (0, 0, r, r), mode=border), ky.expand(c, 1, -1, 1), groups=c)

    if out is None:
        return blur(image)
    for c in range(image.shape[1]):
        out[:, c : c + 1] = blur(image[:, c : c + 1])
    return out


class GaussianBlur(nn.Module):
    def __init__(self, sigma: float, border: str = "normalized"):
        super().__init__()
        self.sigma = sigma
        self.border = border
        self.register_buffer("kernel", gaussian_kernel1d(sigma), persistent=False)

    def forward(self, image: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Blur; `inplace` overwrites the input, one channel at a time."""
        if self.kernel.device != image.device:
            self.kernel = self.kernel.to(image.device)
        return gaussian_blur(image, self.kernel, self.border, out=image if inplace else None)
