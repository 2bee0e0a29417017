"""Checkpoints of trained classifiers: weights plus everything needed to rebuild, feed and read them.

A checkpoint is a `torch.save`d dict of tensors and plain values only, so it loads with
`torch.load(weights_only=True)` (no pickled code runs). It names the architecture and its options,
the class names and the preprocessing; `last.pt` also carries the optimizer and RNG state for --resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import imagefiles
from ..errors import ModelError
from .architectures import Net, build_model
from .backbone import Backbone, freeze
from .preprocessing import Preprocessing
from .weights import check_finite_weights, safe_load

FORMAT = "deepdream-classifier"
VERSION = 1


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its model."""

    arch: str
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    options: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    tta: bool = False  # evaluate with the horizontal flip averaged in

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "arch": self.arch,
            "classes": list(self.classes),
            "preprocessing": self.preprocessing.to_dict(),
            "options": dict(self.options),
            "epoch": self.epoch,
            "metrics": dict(self.metrics),
            "tta": self.tta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CheckpointInfo":
        return cls(
            arch=str(d["arch"]),
            classes=tuple(map(str, d["classes"])),
            preprocessing=Preprocessing.from_dict(d["preprocessing"]),
            options=dict(d.get("options", {})),
            epoch=int(d.get("epoch", 0)),
            metrics=dict(d.get("metrics", {})),
            tta=bool(d.get("tta", False)),
        )


def save_checkpoint(
    path: str | Path, model: nn.Module, info: CheckpointInfo, training_state: dict | None = None
) -> Path:
    """Write a checkpoint atomically; `training_state` (optimizer, RNG, history) makes it resumable."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {**info.to_dict(), "state_dict": state}
    if training_state is not None:
        payload["training_state"] = training_state
    imagefiles.atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely; ModelError when it is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    payload = safe_load(path, f"checkpoint {path}", "a checkpoint written by 'deepdream train'")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not a checkpoint written by 'deepdream train' (for plain weights use --weights)")
    if payload.get("version", 0) > VERSION:
        raise ModelError(f"{path} was written by a newer deepdream (checkpoint version {payload['version']})")
    return payload


def load_checkpoint(path: str | Path) -> tuple[Net, CheckpointInfo, dict[str, Any]]:
    """Rebuild the trained classifier (eval mode, on the CPU); also return its info and raw payload."""
    payload = read_checkpoint(path)
    try:
        info = CheckpointInfo.from_dict(payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"checkpoint {path} is incomplete or invalid ({exc})") from None
    if not isinstance(payload.get("state_dict"), dict):
        raise ModelError(f"checkpoint {path} is incomplete (no state_dict)")
    check_finite_weights(payload["state_dict"], path)
    # pretrained=False: the checkpoint holds every weight, nothing is downloaded
    try:
        net = build_model(info.arch, len(info.classes), pretrained=False, options=info.options)
    except (TypeError, ValueError, RuntimeError) as exc:  # options of the wrong type or size
        raise ModelError(f"checkpoint {path} names an architecture it cannot build ({info.arch}: {exc})") from None
    try:
        net.model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines() or ["weights do not match"]
        raise ModelError(f"checkpoint {path} does not fit {info.arch}: {lines[-1].strip()}") from None
    net.model.eval()
    return net, info, payload


def backbone_from_checkpoint(path: str | Path) -> Backbone:
    """A trained checkpoint as a dreaming backbone: categories are its class names, the model frozen."""
    net, info, _ = load_checkpoint(path)
    model = freeze(net.model)
    pre = info.preprocessing
    return Backbone(
        name=info.arch,
        model=model,
        mean=pre.mean,
        std=pre.std,
        categories=info.classes,
        recommended_layers=net.recommended_layers,
        min_size=net.min_size,
        source=f"checkpoint {path} (epoch {info.epoch})",
    )
