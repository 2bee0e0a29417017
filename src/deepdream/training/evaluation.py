"""`evaluate_checkpoint`: a trained checkpoint scored on a data folder (what `deepdream evaluate` runs)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..models.checkpoint import CheckpointInfo, load_checkpoint
from .data import decode, evaluation_split
from .loop import Evaluation, evaluate
from .precision import training_precision
from .run import progress_bar


@dataclass(frozen=True)
class CheckpointEvaluation:
    """A checkpoint's scores on one set of images."""

    checkpoint: Path
    info: CheckpointInfo
    evaluation: Evaluation
    skipped: tuple[tuple[Path, str], ...]
    tta: bool
    seconds: float

    def to_dict(self, split: str, data: str | Path) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "data": str(data),
            "skipped": len(self.skipped),
            **self.evaluation.to_dict(split),
        }


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    *,
    split: str = "auto",
    batch_size: int = 64,
    tta: bool | None = None,
    progress: bool = True,
    on_skip: Callable[[Path, str], None] | None = None,
) -> CheckpointEvaluation:
    """Score `checkpoint` on `data_dir` (its test/ or val/ folder, `split`, or a plain <class>/ tree).

    tta: average in the mirrored image; None: as the checkpoint was trained.
    """
    net, info, _ = load_checkpoint(checkpoint)
    images = evaluation_split(data_dir, info.classes, split)
    pre = info.preprocessing
    start = time.perf_counter()
    with progress_bar(len(images), "decoding", progress) as bar:
        data = decode(images, pre.resize, threads=torch.get_num_threads(), progress=bar.update, on_skip=on_skip)
    model = net.model.to(memory_format=torch.channels_last)
    tta = info.tta if tta is None else tta
    precision = training_precision("auto", torch.device("cpu"))
    with progress_bar(len(data), "evaluating", progress) as bar:
        ev = evaluate(model, data, pre, batch_size=batch_size, precision=precision, tta=tta, progress=bar)
    return CheckpointEvaluation(Path(checkpoint), info, ev, data.skipped, tta, time.perf_counter() - start)
