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


def gaussian_blur(image: torch.Tensor, kernel: torch.Tensor, border: str = "zeros") -> torch.Tensor:
    """Separable depthwise blur of B x C x H x W with a 1-D kernel.

    border "zeros" pads inside the convolution (no padded copies: gradients at 8K are 400 MB each);
    "replicate" pads pictures, whose edges must not darken.
    """
    c = image.shape[1]
    r = kernel.numel() // 2
    k = kernel.to(image.dtype)
    if border == "zeros":
        x = F.conv2d(image, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
        return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)
    x = F.conv2d(F.pad(image, (r, r, 0, 0), mode=border), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=border), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class GaussianBlur(nn.Module):
    def __init__(self, sigma: float, border: str = "zeros"):
        super().__init__()
        self.sigma = sigma
        self.border = border
        self.register_buffer("kernel", gaussian_kernel1d(sigma), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.kernel.device != image.device:
            self.kernel = self.kernel.to(image.device)
        return gaussian_blur(image, self.kernel, self.border)
