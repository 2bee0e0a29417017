"""Recipes: the settings that work for one architecture and starting point, measured on the cats-vs-dogs study.

`deepdream train DATA --arch efficientnet_lite0 --pretrained` with nothing else runs the recipe for
(efficientnet_lite0, pretrained); any option given on top replaces the recipe's value. A choice
without a recipe gets TrainConfig's generic defaults. Figures: docs/training.md, benchmarks/study.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """TrainConfig values for one (architecture, pretrained) choice, and what they reached."""

    settings: dict[str, Any] = field(default_factory=dict)
    measured: str = ""


RECIPES: dict[tuple[str, bool], Recipe] = {
    ("simple_cnn", False): Recipe(
        {"epochs": 26, "size": 96, "crop_scale": 0.35, "weight_decay": 0.05},
        "cats-vs-dogs 0.807 test accuracy, 26 epochs from scratch",
    ),
    ("efficientnet_lite0", True): Recipe(
        # freezing blocks 0-4 runs them in bf16 without a backward pass; scoring at 256 px after 224 px crops
        {"trainable_from": "blocks.5", "epochs": 2, "eval_size": 256, "crop_scale": 0.5, "warmup": 0.3},
        "cats-vs-dogs 0.989 test accuracy, 2 epochs of fine-tuning",
    ),
}


def recipe(arch: str = "simple_cnn", pretrained: bool = False, **changes: Any) -> TrainConfig:
    """The TrainConfig of the recipe for `arch` (pretrained or not), with `changes` on top."""
    pretrained = pretrained or bool(changes.get("weights"))
    settings = dict(RECIPES.get((arch, pretrained), Recipe()).settings)
    if changes.get("freeze_backbone"):
        settings.pop("trainable_from", None)  # the two are exclusive; the option given wins
    return TrainConfig(arch=arch, pretrained=pretrained, **{**settings, **changes})
