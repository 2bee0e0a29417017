"""One worker's side of a batch: the network loaded once, then items dreamed one at a time.

Local processes and Ray actors both hold an `ItemRunner`; an item's failure becomes a result, never
an exception, so one corrupt file cannot stop a worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from .. import imagefiles
from ..engine.folding import fold_batchnorm
from ..engine.objectives import build_objective
from ..errors import DeepDreamError
from ..models.backbone import Backbone
from ..models.load import load_backbone
from ..runtime import resolve_device
from ..settings import Settings
from ..still import dream
from ..video import dream_video
from .manifest import ItemResult
from .plan import BatchItem, BatchJob


@dataclass(frozen=True)
class Task:
    """An item to dream; `resume` continues the frames of an interrupted video with the same settings."""

    item: BatchItem
    resume: bool = False


class ItemRunner:
    """Dreams batch items with one network load (per process, GPU or Ray actor)."""

    def __init__(self, job: BatchJob, *, device: str | torch.device | None = None, threads: int | None = None):
        if threads is not None:
            torch.set_num_threads(threads)  # this worker's share of the machine's cores
        settings = job.settings
        device = device if device is not None else resolve_device(settings.device)
        self.job = job
        backbone = load_backbone(settings.model, weights=settings.weights, checkpoint=settings.checkpoint,
                                 device=device)  # fmt: skip
        self.backbone = _folded_once(backbone, settings)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def identity(self) -> str:
        """'host:pid' of this worker (a method, so a Ray actor can be asked too)."""
        return self.name

    def run(self, task: Task, data: bytes | None = None) -> ItemResult:
        """Dream one item into its output path, or, given the input's bytes, return the output's bytes."""
        item = task.item
        began = time.perf_counter()
        with _paths(task, data) as (source, output):
            try:
                self._dream(task, source, output)
                out = output.read_bytes() if data is not None else None
                return ItemResult(item.relpath, True, time.perf_counter() - began, None, self.name, out)
            except DeepDreamError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a batch records any item's failure and goes on
                error = f"{type(exc).__name__}: {exc}"
            # messages name the input as the user knows it, wherever the worker read it from
            error = error.replace(str(source), str(item.source))
        return ItemResult(item.relpath, False, time.perf_counter() - began, error, self.name)

    def _dream(self, task: Task, source: Path, output: Path) -> None:
        item, settings = task.item, task.item.settings(self.job)
        output.parent.mkdir(parents=True, exist_ok=True)
        if item.kind == "image":
            result = dream(source, settings=settings, backbone=self.backbone)
            imagefiles.save_image(result, output, metadata=result.info["deepdream"])
            return
        video = self.job.video
        dream_video(source, output, settings, flow=video.flow, blend=video.blend, start=video.start,
                    duration=video.duration, max_size=video.max_size, resume=task.resume, force=True,
                    backbone=self.backbone)  # fmt: skip


def _folded_once(backbone: Backbone, settings: Settings) -> Backbone:
    """The backbone with batch norm folded once per worker instead of once per item.

    Each dream folds the network it is given (a deep copy and two probe passes); given this folded
    copy, it finds nothing left to fold, and the pixels are the same. Not with a guide: its features
    are read through the unfolded network.
    """
    if settings.guide:
        return backbone
    keep = build_objective(backbone, settings).layers
    return dataclasses.replace(backbone, model=fold_batchnorm(backbone.model, keep=keep))


@contextlib.contextmanager
def _paths(task: Task, data: bytes | None) -> Iterator[tuple[Path, Path]]:
    """(input, output) paths: the item's own, or a private folder for a worker without the driver's disk."""
    if data is None:
        yield task.item.source, task.item.output
        return
    with tempfile.TemporaryDirectory(prefix="deepdream-batch-") as folder:
        source = Path(folder) / f"input{task.item.source.suffix}"
        source.write_bytes(data)
        yield source, Path(folder) / f"output{task.item.output.suffix}"
