"""`run_batch`: plan the items, skip what the manifest says is finished, hand the rest to an executor
(local processes or Ray), and record every outcome as it arrives."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from ..errors import DeepDreamError, OutputError
from ..imagefiles import atomic_write
from ..runtime import Progress, draw_seed, progress_bar
from .local import LocalExecutor, ResultHook, StartHook
from .manifest import DONE, FAILED, MANIFEST_NAME, ItemResult, Manifest
from .plan import BatchItem, BatchJob, plan_batch
from .segments import frame_count, join, remove_folders, segment_folder, split
from .worker import Task, unpack_frames

BASE_SEED = "base_seed"


class Executor(Protocol):
    """Where items are dreamed: `LocalExecutor`, `RayExecutor`."""

    def describe(self) -> str: ...

    def run(self, tasks: list[Task], job: BatchJob, on_start: StartHook, on_result: ResultHook) -> None: ...


@dataclass
class BatchSummary:
    """What a batch did: items dreamed now, skipped as already done, failed (now or, unchanged, before)."""

    manifest: Path
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)  # relpath -> message, for every failed item

    @property
    def ok(self) -> bool:
        return self.failed == 0


def _base_seed(manifest: Manifest, job: BatchJob) -> BatchJob:
    """The user's seed, else the one an earlier run of this folder drew, else a new one (recorded)."""
    seed = job.settings.seed
    if seed is None:
        kept = manifest.meta(BASE_SEED)
        seed = int(kept) if kept is not None else draw_seed()
    manifest.set_meta(BASE_SEED, str(seed))
    return BatchJob(job.settings.replace(seed=seed), job.video, job.image_format)


def _triage(items: list[BatchItem], manifest: Manifest, summary: BatchSummary, force: bool,
            retry_failed: bool) -> list[Task]:  # fmt: skip
    """Tasks for the items to dream; counts the ones a re-run skips."""
    tasks = []
    for item in items:
        record = manifest.get(item.relpath)
        same = record is not None and record.matches(item) and not force
        if same and record.status == DONE and item.output.exists():
            summary.skipped += 1
        elif same and record.status == FAILED and not retry_failed:
            summary.failed += 1  # the same input with the same settings would fail the same way
            summary.errors[item.relpath] = f"{record.error} (earlier run; --retry-failed to try again)"
        else:
            # an interrupted video continues from its cached frames when nothing about it changed
            tasks.append(Task(item, resume=same and item.kind == "video"))
    return tasks


def run_batch(
    inputs: list[str | Path],
    outdir: str | Path,
    job: BatchJob,
    *,
    executor: Executor | None = None,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool = False,
    on_start: Callable[[BatchItem, str], None] | None = None,
) -> BatchSummary:
    """Dream every image and video of `inputs` into `outdir`, mirroring the input tree.

    The manifest `outdir/manifest.sqlite` records each item; a re-run skips finished items whose
    settings and input did not change, and redoes interrupted ones (`force`: redo everything).
    A failing item is recorded and the batch goes on. `on_start(item, worker)` is called as an
    item is handed to a worker.
    """
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {outdir}: {exc}") from exc
    executor = executor or LocalExecutor()
    began = time.perf_counter()
    with Manifest(outdir / MANIFEST_NAME) as manifest:
        job = _base_seed(manifest, job)
        items = plan_batch(inputs, outdir, job)
        summary = BatchSummary(manifest.path)
        tasks = _triage(items, manifest, summary, force, retry_failed)
        with progress_bar(len(items), "batch", "item", enabled=progress) as bar:
            bar.update(len(items) - len(tasks))
            recorder = _Recorder(job, manifest, summary, bar, on_start)
            tasks = recorder.split_videos(tasks, outdir)
            if tasks:
                executor.run(tasks, job, recorder.started, recorder.finished)
    summary.seconds = time.perf_counter() - began
    return summary


class _Recorder:
    """The driver's bookkeeping as workers report: returned outputs written, manifest rows, summary and
    progress; a segmented video is stitched and recorded once its last segment is in."""

    def __init__(self, job: BatchJob, manifest: Manifest, summary: BatchSummary, bar: Progress,
                 on_start: Callable[[BatchItem, str], None] | None):  # fmt: skip
        self.job, self.manifest, self.summary, self.bar, self.on_start = job, manifest, summary, bar, on_start
        self.tasks: dict[str, Task] = {}
        self.segments: dict[str, list[ItemResult]] = {}  # relpath -> results of its finished segments
        self.begun: set[str] = set()

    def split_videos(self, tasks: list[Task], outdir: Path) -> list[Task]:
        """Tasks with each video cut into `job.video.segments` segment tasks (a video that cannot be
        read is recorded as failed here)."""
        video = self.job.video
        out = []
        for task in tasks:
            if task.item.kind == "video" and video.segments > 1:
                try:
                    total, fps = frame_count(task.item.source, video.start, video.duration)
                except DeepDreamError as exc:
                    self.started(task, "driver")
                    self._record(ItemResult(task.item.relpath, False, 0.0, str(exc), "driver"))
                    continue
                out += [Task(task.item, task.resume, s, segment_folder(outdir, task.item.relpath, s.index))
                        for s in split(total, video.segments, video.overlap, fps, video.start)]  # fmt: skip
            else:
                out.append(task)
        self.tasks = {task.key: task for task in out}
        return out

    def started(self, task: Task, worker: str) -> None:
        if task.item.relpath not in self.begun:  # one row per item, however many segments it has
            self.begun.add(task.item.relpath)
            self.manifest.started(task.item, worker)
        self.bar.set_description(task.key)
        if self.on_start is not None:
            self.on_start(task.item, worker)

    def finished(self, result: ItemResult) -> None:
        task = self.tasks[result.relpath]
        result = self._stored(task, result)
        if task.segment is None:
            self._record(result)
            return
        done = self.segments.setdefault(task.item.relpath, [])
        done.append(result)
        if len(done) == task.segment.count:
            self._record(self._joined(task.item, done))

    def _stored(self, task: Task, result: ItemResult) -> ItemResult:
        """Write what a worker returned (an output file, or a segment's frames) where it belongs."""
        if not result.ok or result.data is None:
            return result
        target = task.frames if task.segment is not None else task.item.output
        try:
            if task.segment is not None:
                unpack_frames(result.data, task.frames)
            else:
                task.item.output.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(task.item.output, lambda tmp: tmp.write_bytes(result.data))
        except OSError as exc:
            return dataclasses.replace(result, ok=False, error=f"cannot write {target}: {exc}", data=None)
        return dataclasses.replace(result, data=None)

    def _joined(self, item: BatchItem, results: list[ItemResult]) -> ItemResult:
        """One result for a segmented video: its stitched output, or the first segment's error."""
        seconds = sum(r.seconds for r in results)  # worker time, not wall time
        workers = ", ".join(sorted({r.worker for r in results}))
        failed = [r for r in results if not r.ok]
        if failed:
            return ItemResult(item.relpath, False, seconds, failed[0].error, workers)
        parts = sorted((t for t in self.tasks.values() if t.item.relpath == item.relpath), key=lambda t: t.key)
        try:
            join(item.source, item.output, [t.segment for t in parts], [t.frames for t in parts],
                 start=self.job.video.start, duration=self.job.video.duration)  # fmt: skip
        except DeepDreamError as exc:
            return ItemResult(item.relpath, False, seconds, str(exc), workers)
        remove_folders(t.frames for t in parts)
        return ItemResult(item.relpath, True, seconds, None, workers)

    def _record(self, result: ItemResult) -> None:
        self.manifest.finished(result)
        if result.ok:
            self.summary.done += 1
        else:
            self.summary.failed += 1
            self.summary.errors[result.relpath] = result.error or "failed"
        self.bar.update(1)
