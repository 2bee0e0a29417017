"""What a training step minimises and how: the classifier loss, class weights, optimizers, the lr schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SettingsError
from ..models.architectures import Net

TORCH_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw": lambda params, lr, wd: torch.optim.AdamW(params, lr=lr, weight_decay=wd),
    "adam": lambda params, lr, wd: torch.optim.Adam(params, lr=lr, weight_decay=wd),
    "sgd": lambda params, lr, wd: torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9, nesterov=True),
}


def class_weights(spec: Sequence[float] | str | None, counts: Sequence[int]) -> torch.Tensor | None:
    """Cross-entropy class weights: None, explicit numbers, or 'auto' = N / (K * n_c) (inverse frequency)."""
    if spec is None:
        return None
    k = len(counts)
    if spec == "auto":
        if min(counts) == 0:
            raise SettingsError("class weights 'auto' need at least one training image per class")
        n = sum(counts)
        return torch.tensor([n / (k * c) for c in counts], dtype=torch.float32)
    weights = [float(w) for w in spec]
    if len(weights) != k:
        raise SettingsError(f"{len(weights)} class weights given for {k} classes")
    if any(not math.isfinite(w) or w <= 0 for w in weights):
        raise SettingsError(f"class weights must be positive numbers, got {','.join(map(str, spec))}")
    return torch.tensor(weights, dtype=torch.float32)


@dataclass(frozen=True)
class ClassifierLoss:
    """Weighted cross-entropy; with an auxiliary head (InceptionV3 in training) its loss is added, weighted."""

    weight: torch.Tensor | None = None
    label_smoothing: float = 0.0
    aux_weight: float = 0.4

    def __call__(self, output: torch.Tensor | tuple, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss, main logits)."""
        aux = None
        if isinstance(output, tuple):  # torchvision InceptionOutputs / GoogLeNetOutputs
            output, aux = output[0], output[1]
        weight = self.weight.to(output.device) if self.weight is not None else None
        loss = F.cross_entropy(output.float(), targets, weight=weight, label_smoothing=self.label_smoothing)
        if aux is not None and self.aux_weight > 0:
            loss = loss + self.aux_weight * F.cross_entropy(
                aux.float(), targets, weight=weight, label_smoothing=self.label_smoothing
            )
        return loss, output


def make_optimizer(
    name: str, net: Net, params: Sequence[nn.Parameter], lr: float, weight_decay: float, head_lr_scale: float
) -> torch.optim.Optimizer:
    """The named optimizer; the new head's parameter group gets its lr scaled (`lr_scale`)."""
    head = {id(p) for module in net.head for p in net.model.get_submodule(module).parameters()}
    groups = [
        {"params": [p for p in params if id(p) not in head], "lr_scale": 1.0},
        {"params": [p for p in params if id(p) in head], "lr_scale": head_lr_scale},
    ]
    return TORCH_OPTIMIZERS[name]([g for g in groups if g["params"]], lr, weight_decay)


def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up to `base`, then cosine decay to zero; a pure function of the step, so resuming needs no state."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
