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
from .optim import TORCH_OPTIMIZERS
from .precision import TRAIN_PRECISIONS

# bounds of the numeric options, shared by TrainConfig and the CLI's parser: beyond them a run either overflows
# float32 inside the optimiser (lr x head scale x weight decay) or cannot be meant
LR_LIMIT = 10.0
HEAD_LR_SCALE_LIMIT = 1000.0
WEIGHT_DECAY_LIMIT = 10.0
AUX_WEIGHT_LIMIT = 100.0
CLASS_WEIGHT_LIMIT = 1e6
EPOCHS_LIMIT = 100_000
BATCH_LIMIT = 65536
SIZE_LIMIT = 4096  # pixels of a crop or of the decoded square
WIDTH_LIMIT = 1024  # simple_cnn's first-layer channels


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise SettingsError(message)


def _in(value: Any, low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> bool:
    """A finite real number in the range (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (value > low if open_low else value >= low) and (value < high if open_high else value <= high)


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


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
        _need(_int_in(self.epochs, 1, EPOCHS_LIMIT), f"epochs must be from 1 to {EPOCHS_LIMIT}, got {self.epochs}")
        _need(
            _int_in(self.batch_size, 1, BATCH_LIMIT),
            f"batch size must be from 1 to {BATCH_LIMIT}, got {self.batch_size}",
        )
        _need(
            self.optimizer in TORCH_OPTIMIZERS,
            f"unknown optimizer '{self.optimizer}' (choose from {', '.join(TORCH_OPTIMIZERS)})",
        )
        _need(
            self.lr is None or _in(self.lr, 0, LR_LIMIT, open_low=True),
            f"learning rate must be in (0, {LR_LIMIT:g}], got {self.lr}",
        )
        _need(
            self.head_lr_scale is None or _in(self.head_lr_scale, 0, HEAD_LR_SCALE_LIMIT, open_low=True),
            f"head lr scale must be in (0, {HEAD_LR_SCALE_LIMIT:g}], got {self.head_lr_scale}",
        )
        _need(
            _in(self.weight_decay, 0, WEIGHT_DECAY_LIMIT),
            f"weight decay must be in [0, {WEIGHT_DECAY_LIMIT:g}], got {self.weight_decay}",
        )
        _need(
            _in(self.label_smoothing, 0, 1, open_high=True),
            f"label smoothing must be in [0, 1), got {self.label_smoothing}",
        )
        _need(_in(self.crop_scale, 0, 1, open_low=True), f"crop scale must be in (0, 1], got {self.crop_scale}")
        for name in ("size", "eval_size", "resize"):
            value = getattr(self, name)
            _need(
                value is None or _int_in(value, 16, SIZE_LIMIT),
                f"{name.replace('_', ' ')} must be from 16 to {SIZE_LIMIT} px, got {value}",
            )
        largest = max(self.size or 0, self.eval_size or 0)
        _need(self.resize is None or self.resize >= largest, f"resize must be >= size and eval size ({largest})")
        _need(self.val_split is None or _in(self.val_split, 0, 1, open_low=True, open_high=True),
              f"val split must be between 0 and 1, got {self.val_split}")  # fmt: skip
        _need(self.precision in TRAIN_PRECISIONS, f"precision must be one of {', '.join(TRAIN_PRECISIONS)}")
        _need(
            _in(self.aux_weight, 0, AUX_WEIGHT_LIMIT),
            f"aux weight must be in [0, {AUX_WEIGHT_LIMIT:g}], got {self.aux_weight}",
        )
        _need(_in(self.warmup, 0, EPOCHS_LIMIT), f"warm-up must be from 0 to {EPOCHS_LIMIT} epochs, got {self.warmup}")
        check_seed(self.seed)
        if isinstance(self.class_weights, str):
            _need(self.class_weights == "auto", f"class weights must be 'auto' or numbers, got '{self.class_weights}'")
        elif self.class_weights is not None:
            _need(
                all(_in(w, 0, CLASS_WEIGHT_LIMIT, open_low=True) for w in self.class_weights),
                f"class weights must be in (0, {CLASS_WEIGHT_LIMIT:g}]",
            )
        width = self.options.get("width") if isinstance(self.options, dict) else None
        _need(width is None or _int_in(width, 1, WIDTH_LIMIT), f"width must be from 1 to {WIDTH_LIMIT}, got {width}")

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
