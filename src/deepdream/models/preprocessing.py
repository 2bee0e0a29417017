"""How images reach a trained classifier; it travels with the weights in every checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

STORED_SIZE_LIMIT = 8192  # read from a file: larger is no classifier input, and decoding it would exhaust memory


@dataclass(frozen=True)
class Preprocessing:
    """How images reach the network: decoded square of `resize`, a crop, then (x - mean) / std.

    Training crops `size` px at random; evaluation takes the centre `eval_size` px (default `size`).
    Random resized crops make objects look larger in training than in a centre crop of the same
    size, so evaluating a little larger (e.g. 256 after training at 224) matches them up again
    (Touvron et al., "Fixing the train-test resolution discrepancy", 2019).
    """

    size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    eval_size: int | None = None

    def __post_init__(self) -> None:
        """ValueError for what no image can go through (a checkpoint from elsewhere may hold anything)."""
        if not all(isinstance(v, int) and v >= 1 for v in (self.size, self.resize, self.test_size)):
            raise ValueError(
                f"sizes must be positive, got size {self.size}, resize {self.resize}, eval size {self.eval_size}"
            )
        if self.resize < max(self.size, self.test_size):
            raise ValueError(f"resize {self.resize} is smaller than the crops ({self.size}, {self.test_size})")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need one value per colour channel")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)) or min(self.std) <= 0:
            raise ValueError(f"mean and std must be finite, std positive, got mean {self.mean}, std {self.std}")

    @property
    def test_size(self) -> int:
        return self.eval_size or self.size

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "eval_size": self.eval_size,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        eval_size = int(d["eval_size"]) if d.get("eval_size") else None
        if max(int(d["size"]), int(d["resize"]), eval_size or 0) > STORED_SIZE_LIMIT:
            raise ValueError(f"sizes above {STORED_SIZE_LIMIT} px (size {d['size']}, resize {d['resize']})")
        return cls(
            int(d["size"]), int(d["resize"]), tuple(map(float, d["mean"])), tuple(map(float, d["std"])), eval_size
        )

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x01.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x01.dtype).view(1, 3, 1, 1)
        return (x01 - mean) / std

    def center(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 B x 3 x S x S -> float B x 3 x eval_size x eval_size in [0, 1], the evaluation view."""
        n = self.test_size
        off = (images.shape[-1] - n) // 2
        return images[..., off : off + n, off : off + n].float() / 255
