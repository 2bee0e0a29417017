"""TrainConfig: everything that determines a training run, how it is saved, and when a run may be resumed."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OutputError, SettingsError
from ..models.architectures import get_architecture
from ..runtime import check_seed
from .optim import OPTIMIZERS
from .precision import PRECISIONS


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise SettingsError(message)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; saved in the run folder and in every checkpoint.

    The field defaults are generic; `training.recipe(arch, pretrained)` starts from the measured
    recipe for that choice instead (what `deepdream train` does).
    """

    arch: str = "simple_cnn"
    pretrained: bool = False
    weights: str | None = None  # a local state dict to start from instead of the built-in pretrained weights
    options: dict[str, Any] = field(default_factory=dict)  # architecture options (aux_logits, width, ...)
    freeze_backbone: bool = False
    trainable_from: str | None = None
    freeze_bn: bool | None = None  # None: frozen batch-norm statistics exactly when fine-tuning pretrained weights
    epochs: int = 10
    batch_size: int = 32  # the global batch: with N processes each takes batch_size / N images per step
    optimizer: str = "adamw"
    lr: float | None = None  # None: 3e-3 from scratch, 1e-3 head only, 1e-4 fine-tuning
    head_lr_scale: float | None = None  # the new head's lr is lr * this; None: 10 when fine-tuning pretrained weights
    weight_decay: float = 0.01
    warmup: float = 0.5  # epochs of linear warm-up before the cosine decay
    label_smoothing: float = 0.1
    class_weights: tuple[float, ...] | str | None = None  # explicit, 'auto' (inverse frequency) or none
    size: int | None = None  # training crop; None: the architecture's default
    eval_size: int | None = None  # centre crop for evaluation; None: size
    resize: int | None = None  # decoded square; None: max(size, eval_size) / 0.875
    crop_scale: float = 0.25  # smallest area fraction of the random resized crop
    val_split: float | None = None
    tta: bool = False  # evaluate with the horizontal flip averaged in
    aux_weight: float = 0.4  # weight of InceptionV3's auxiliary loss when aux_logits is on
    seed: int = 0
    precision: str = "auto"
    device: str = "cpu"

    def __post_init__(self) -> None:
        get_architecture(self.arch)
        _need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _need(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        _need(self.optimizer in OPTIMIZERS, f"unknown optimizer '{self.optimizer}' (choose from {', '.join(OPTIMIZERS)})")
        _need(self.lr is None or self.lr > 0, f"learning rate must be positive, got {self.lr}")
        _need(self.head_lr_scale is None or self.head_lr_scale > 0, f"head lr scale must be positive, got {self.head_lr_scale}")
        _need(self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}")
        _need(0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        _need(0 < self.crop_scale <= 1, f"crop scale must be in (0, 1], got {self.crop_scale}")
        _need(self.size is None or self.size >= 16, f"size must be >= 16, got {self.size}")
        _need(self.eval_size is None or self.eval_size >= 16, f"eval size must be >= 16, got {self.eval_size}")
        largest = max(self.size or 0, self.eval_size or 0)
        _need(self.resize is None or self.resize >= largest, f"resize must be >= size and eval size ({largest})")
        _need(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        _need(self.aux_weight >= 0, f"aux weight must be >= 0, got {self.aux_weight}")
        _need(math.isfinite(self.warmup) and self.warmup >= 0, f"warm-up must be >= 0 epochs, got {self.warmup}")
        _need(self.lr is None or math.isfinite(self.lr), f"learning rate must be finite, got {self.lr}")
        check_seed(self.seed)
        if isinstance(self.class_weights, str):
            _need(self.class_weights == "auto", f"class weights must be 'auto' or numbers, got '{self.class_weights}'")

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if isinstance(self.class_weights, tuple):
            d["class_weights"] = list(self.class_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if isinstance(values.get("class_weights"), list):
            values["class_weights"] = tuple(values["class_weights"])
        return cls(**values)

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        if self.freeze_backbone:
            return 1e-3
        return 1e-4 if self.pretrained else 3e-3

    def head_lr_multiplier(self) -> float:
        """A fresh head on pretrained features learns faster than the features should move."""
        if self.head_lr_scale is not None:
            return self.head_lr_scale
        return 10.0 if self.pretrained and not self.freeze_backbone else 1.0

    def bn_frozen(self) -> bool:
        return self.pretrained if self.freeze_bn is None else self.freeze_bn


def load_config(run_dir: str | Path) -> TrainConfig:
    """The configuration a run folder was trained with (its config.json)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise OutputError(f"{run_dir} is not a training run (no config.json)")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise OutputError(f"cannot read {path}: {exc}") from exc


def check_resumable(saved: TrainConfig, config: TrainConfig) -> None:
    """SettingsError naming every setting that differs from the run's own: a resumed run may only train longer."""
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "epochs"]
    changed = [name for name in names if getattr(saved, name) != getattr(config, name)]
    if changed:
        raise SettingsError(f"--resume continues the run as configured; these settings differ: {', '.join(changed)}")
