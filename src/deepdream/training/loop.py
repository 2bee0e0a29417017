"""One epoch of training, and predictions and scores on a decoded set (torchvision's reference split).

Model-agnostic: these functions see batches, a loss and an optimizer, never a run folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..models.architectures import train_mode
from ..models.preprocessing import Preprocessing
from ..runtime import Progress, autocast, check_finite
from . import report
from .data import Decoded
from .optim import ClassifierLoss
from .precision import PrecisionPlan, precision_switch


@dataclass(frozen=True)
class EpochStats:
    """Sums over the images this process saw: mean loss and accuracy follow from them."""

    loss_sum: float
    correct: int
    images: int
    seconds: float

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.images, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.images, 1)


def _to_input(x: torch.Tensor, pre: Preprocessing, device: torch.device) -> torch.Tensor:
    return pre.normalize(x).to(device).contiguous(memory_format=torch.channels_last)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    criterion: ClassifierLoss,
    optimizer: torch.optim.Optimizer,
    preprocessing: Preprocessing,
    *,
    lr_at: Callable[[int], float],
    step: int = 0,
    precision: PrecisionPlan | str = "fp32",
    freeze_bn: bool = False,
    progress: Progress | None = None,
) -> tuple[EpochStats, int]:
    """One pass over `loader` (images in [0, 1], labels); returns the epoch's stats and the next global step.

    `model` may be a DistributedDataParallel wrapper; modes and precision hooks go to the module inside.
    """
    device = next(model.parameters()).device
    inner = getattr(model, "module", model)
    plan = precision if isinstance(precision, PrecisionPlan) else PrecisionPlan(precision, precision)
    train_mode(inner, freeze_bn)
    start = time.perf_counter()
    total_loss, correct, seen = 0.0, 0, 0
    with precision_switch(inner, plan, device):
        for x, y in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step) * group.get("lr_scale", 1.0)
            y = y.to(device)
            with autocast(device, plan.frozen):
                output = model(_to_input(x, preprocessing, device))
            loss, logits = criterion(output, y)
            check_finite(loss, "the training loss", f"at step {step + 1}; lower --lr")  # before it reaches the weights
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            total_loss += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if progress is not None:
                progress.update(len(y))
    return EpochStats(total_loss, correct, seen, time.perf_counter() - start), step


@dataclass(frozen=True)
class Evaluation:
    """Predictions on a set of images, with the class names they index."""

    targets: torch.Tensor  # N
    probabilities: torch.Tensor  # N x K
    classes: tuple[str, ...]
    loss: float

    @classmethod
    def score(cls, probabilities: torch.Tensor, data: Decoded) -> "Evaluation":
        """Loss (unweighted cross-entropy of the probabilities) and the rest, for a decoded set."""
        loss = float(F.nll_loss(probabilities.clamp_min(1e-12).log(), data.labels)) if len(data) else float("nan")
        return cls(data.labels, probabilities, data.classes, loss)

    @property
    def predictions(self) -> torch.Tensor:
        return self.probabilities.argmax(1)

    @property
    def confusion(self) -> torch.Tensor:
        return report.confusion_matrix(self.targets, self.predictions, len(self.classes))

    @property
    def accuracy(self) -> float:
        return report.accuracy(self.confusion)

    def to_dict(self, split: str) -> dict[str, Any]:
        cm = self.confusion
        return {
            "split": split,
            "images": len(self.targets),
            "accuracy": self.accuracy,
            "loss": self.loss,
            "confusion_matrix": cm.tolist(),
            "recall": dict(zip(self.classes, report.recall_per_class(cm))),
        }


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    preprocessing: Preprocessing,
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    tta: bool = False,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Class probabilities (N x K) for uint8 squares N x 3 x S x S; tta averages in the mirrored view."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = _to_input(preprocessing.center(images[start : start + batch_size]), preprocessing, device)
        views = (x, x.flip(-1)) if tta else (x,)
        with autocast(device, precision):
            probs = sum(torch.softmax(model(v).float(), dim=1) for v in views) / len(views)
        check_finite(probs, "the model's predictions", "its weights do not hold finite numbers")
        out.append(probs.cpu())
        if progress is not None:
            progress.update(len(x))
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate(
    model: nn.Module,
    data: Decoded,
    preprocessing: Preprocessing,
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    tta: bool = False,
    progress: Progress | None = None,
) -> Evaluation:
    """Score a decoded set: probabilities, loss (unweighted cross-entropy) and the confusion matrix."""
    probs = predict(
        model, data.images, preprocessing, batch_size=batch_size, precision=precision, tta=tta, progress=progress
    )
    return Evaluation.score(probs, data)
