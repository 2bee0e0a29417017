"""How images reach a trained classifier; it travels with the weights in every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
        return cls(int(d["size"]), int(d["resize"]), tuple(map(float, d["mean"])), tuple(map(float, d["std"])), eval_size)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x01.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x01.dtype).view(1, 3, 1, 1)
        return (x01 - mean) / std

    def center(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 B x 3 x S x S -> float B x 3 x eval_size x eval_size in [0, 1], the evaluation view."""
        n = self.test_size
        off = (images.shape[-1] - n) // 2
        return images[..., off : off + n, off : off + n].float() / 255
