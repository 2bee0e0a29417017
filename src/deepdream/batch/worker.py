"""One worker's side of a batch: the network loaded once, then items dreamed one at a time.

Local processes and Ray actors both hold an `ItemRunner`; an item's failure becomes a result, never
an exception, so one corrupt file cannot stop a worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import socket
import tempfile
import time
import traceback
import zipfile
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
from ..video.cache import FrameCache
from .manifest import ItemResult
from .plan import BatchItem, BatchJob
from .segments import Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """An item to dream, or one segment of a video item (its frames go to the folder `frames`).

    `resume` continues the frames of an interrupted video with the same settings.
    """

    item: BatchItem
    resume: bool = False
    segment: Segment | None = None
    frames: Path | None = None

    @property
    def key(self) -> str:
        """The item's relative path, with '#N' for segment N (from 0)."""
        return self.item.relpath if self.segment is None else f"{self.item.relpath}#{self.segment.index}"


class ItemRunner:
    """Dreams batch items with one network load (per process, GPU or Ray actor).

    It sets this process's intra-op threads to `job.threads`: CPU sums are split per thread, so the same
    item gives the same pixels only at the same thread count, whatever the number of workers or the engine.
    `backbone`: one this process loaded already (by `check_job`), on `device`.
    """

    def __init__(self, job: BatchJob, *, device: str | torch.device | None = None, backbone: Backbone | None = None):
        torch.set_num_threads(job.threads)
        settings = job.settings
        device = device if device is not None else resolve_device(settings.device)
        self.job = job
        if backbone is None:
            backbone = load_backbone(settings.model, weights=settings.weights, checkpoint=settings.checkpoint,
                                     device=device)  # fmt: skip
        self.backbone = _folded_once(backbone, settings)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        log.debug("worker %s: %s on %s, %d threads", self.name, settings.model, device, job.threads)

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
                out = None if data is None else _packed(output) if task.segment is not None else output.read_bytes()
                return ItemResult(task.key, True, time.perf_counter() - began, None, self.name, out)
            except DeepDreamError as exc:
                error, trace = str(exc), traceback.format_exc()  # the trace for the batch's log file
            except Exception as exc:  # noqa: BLE001 - a batch records any item's failure and goes on
                error, trace = f"{type(exc).__name__}: {exc}", traceback.format_exc()
            # messages name the input as the user knows it, wherever the worker read it from
            error = error.replace(str(source), str(item.source))
        return ItemResult(task.key, False, time.perf_counter() - began, error, self.name, trace=trace)

    def _dream(self, task: Task, source: Path, output: Path) -> None:
        """Dream the item's file into `output` (for a segment: its frames into the folder `output`)."""
        item, settings = task.item, task.item.settings(self.job)
        output.parent.mkdir(parents=True, exist_ok=True)
        if item.kind == "image":
            result = dream(source, settings=settings, backbone=self.backbone)
            imagefiles.save_image(result, output, metadata=result.info["deepdream"])
            return
        video, segment = self.job.video, task.segment
        span = dict(start=video.start, duration=video.duration, work_dir=None, keep_frames=False)
        if segment is not None:  # its frames stay in `output`; the clip dream_video encodes is not needed
            span = dict(start=segment.start, duration=segment.duration, work_dir=output, keep_frames=True)
            output = output.with_name(output.name + ".mp4")
        dream_video(source, output, settings, flow=video.flow, flow_blend=video.flow_blend, evolve=video.evolve,
                    max_side=video.max_side, resume=task.resume, force=True, backbone=self.backbone,
                    **span)  # fmt: skip
        if segment is not None:
            output.unlink(missing_ok=True)


def check_job(job: BatchJob) -> Backbone:
    """Everything the items share, checked once before a batch starts: the network (model, weights or
    checkpoint), the layers and class of the objective, the guide and the mask. Returns the network on the
    CPU; raises what `dream` would raise for every item."""
    settings = job.settings
    backbone = load_backbone(settings.model, weights=settings.weights, checkpoint=settings.checkpoint, device="cpu")
    guide = imagefiles.load_image(settings.guide, settings.max_size)[0] if settings.guide else None
    build_objective(backbone, settings, guide)
    if settings.mask is not None:
        imagefiles.load_mask(settings.mask, (8, 8))
    return backbone


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
        yield task.item.source, task.frames if task.segment is not None else task.item.output
        return
    with tempfile.TemporaryDirectory(prefix="deepdream-batch-") as folder:
        source = Path(folder) / f"input{task.item.source.suffix}"
        source.write_bytes(data)
        yield source, Path(folder) / ("frames" if task.segment is not None else f"output{task.item.output.suffix}")


def _packed(folder: Path) -> bytes:
    """A segment's frame files as one uncompressed zip (PNGs are compressed already)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.glob(FrameCache.PATTERN)):
            archive.write(path, path.name)
    return buffer.getvalue()


def unpack_frames(data: bytes, folder: Path) -> None:
    """Put a packed segment's frames into `folder` (the driver's side of `_packed`)."""
    cache = FrameCache(folder, {})
    cache.clear()
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if Path(name).name == name and Path(name).match(FrameCache.PATTERN):  # nothing outside the folder
                imagefiles.atomic_write(folder / name, lambda tmp, n=name: tmp.write_bytes(archive.read(n)))
