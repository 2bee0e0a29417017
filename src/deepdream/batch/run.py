"""`run_batch`: plan the items, skip what the manifest says is finished, hand the rest to an executor
(local processes or Ray), and record every outcome as it arrives."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

from .. import locks
from ..errors import DeepDreamError, OutputError
from ..imagefiles import atomic_write
from ..models.backbone import Backbone
from ..runtime import SEED_LIMIT, Progress, draw_seed, package_log, progress_bar
from .local import LocalExecutor, ResultHook, StartHook
from .manifest import DONE, FAILED, MANIFEST_NAME, ItemResult, Manifest
from .plan import BatchItem, BatchJob, plan_batch
from .segments import frame_count, join, remove_folders, segment_folder, split
from .worker import Task, check_job, unpack_frames

BASE_SEED = "base_seed"
LOG_NAME = "batch.log"  # in the output folder, beside the manifest

log = logging.getLogger(__name__)


class Executor(Protocol):
    """Where items are dreamed: `LocalExecutor`, `RayExecutor`."""

    def describe(self) -> str: ...

    def check(self, job: BatchJob) -> None: ...

    def run(self, tasks: list[Task], job: BatchJob, on_start: StartHook, on_result: ResultHook,
            backbone: Backbone | None = None) -> None: ...  # fmt: skip


@dataclass
class BatchSummary:
    """What a batch did: items dreamed now, skipped as already done, failed (now or, unchanged, before)."""

    manifest: Path
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)  # relpath -> message, for every failed item
    log: Path | None = None  # the log file with the traceback of every failed item

    @property
    def ok(self) -> bool:
        return self.failed == 0


def kept_seed(manifest: Manifest) -> int | None:
    """The base seed an earlier run of this folder recorded, checked."""
    kept = manifest.meta(BASE_SEED)
    if kept is None:
        return None
    try:
        seed = int(kept)
    except ValueError:
        seed = -1
    if not 0 <= seed < SEED_LIMIT:
        raise OutputError(f"the manifest {manifest.path} holds the base seed {kept!r}, which is not a seed "
                          "(remove it or choose another output folder)")  # fmt: skip
    return seed


def _read_existing(path: Path) -> int | None:
    """Check a manifest left by an earlier run without changing it (every row read); its base seed."""
    if not path.exists():
        return None
    with Manifest(path, read_only=True) as manifest:
        manifest.records()
        return kept_seed(manifest)


def _seeded(job: BatchJob, kept: int | None) -> BatchJob:
    """The user's seed, else the one an earlier run of this folder drew, else a new one."""
    if job.settings.seed is not None:
        return job
    return dataclasses.replace(job, settings=job.settings.replace(seed=kept if kept is not None else draw_seed()))


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
    A failing item is recorded (its traceback in `outdir/batch.log`) and the batch goes on.
    `on_start(item, worker)` is called as an item is handed to a worker.

    Everything is checked before anything is created (inputs, an earlier manifest, the network, guide
    and mask, the executor): a refused batch leaves no output folder, manifest or log. One batch at a
    time writes an output folder (a lock beside its manifest); a second one is refused.
    """
    outdir = Path(outdir)
    executor = executor or LocalExecutor()
    path = outdir / MANIFEST_NAME
    kept = _read_existing(path)
    drawn = job.settings.seed is None and kept is None
    job = _seeded(job, kept)
    items = plan_batch(inputs, outdir, job)
    executor.check(job)
    backbone = check_job(job)
    began = time.perf_counter()
    with _claimed(outdir, path) as lock, Manifest(path) as manifest, _logging(outdir / LOG_NAME):
        now = kept_seed(manifest)
        if drawn and now is not None:  # another run recorded a seed between our look and our lock: keep it
            job = dataclasses.replace(job, settings=job.settings.replace(seed=now))
            items = plan_batch(inputs, outdir, job)
        manifest.set_meta(BASE_SEED, str(job.settings.seed))
        log.debug("batch of %d items into %s (base seed %d, %s, %s)", len(items), outdir, job.settings.seed,
                 executor.describe(), lock.lock.name)  # fmt: skip
        summary = BatchSummary(manifest.path, log=outdir / LOG_NAME)
        tasks = _triage(items, manifest, summary, force, retry_failed)
        with progress_bar(len(items), "batch", "item", enabled=progress) as bar:
            bar.update(len(items) - len(tasks))
            recorder = _Recorder(job, manifest, summary, bar, on_start)
            tasks = recorder.split_videos(tasks, outdir)
            if tasks:
                executor.run(tasks, job, recorder.started, recorder.finished, backbone=backbone)
        summary.seconds = time.perf_counter() - began
        log.debug("batch: %d done, %d skipped, %d failed in %.1f s", summary.done, summary.skipped, summary.failed,
                 summary.seconds)  # fmt: skip
    return summary


@contextlib.contextmanager
def _claimed(outdir: Path, manifest: Path) -> Iterator[locks.Lock]:
    """The output folder, created if missing, locked for this batch (the lock sits beside the manifest, so every
    spelling of the folder shares it); a refused lock leaves no folder this call created."""
    created = not outdir.exists()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {outdir}: {exc.strerror or exc}") from None
    try:
        lock = locks.acquire(manifest, f"the batch output folder {outdir}")
    except DeepDreamError:
        if created:
            with contextlib.suppress(OSError):
                outdir.rmdir()
        raise
    with lock:
        yield lock


@contextlib.contextmanager
def _logging(path: Path) -> Iterator[None]:
    """This package's log records appended to `path` while the batch runs, debug lines included: each item's
    outcome and the traceback of each failure. Those are debug lines, so a front end that shows the user
    info lines (the CLI without --verbose) shows one line per failed item, not its traceback."""
    try:
        handler = logging.FileHandler(path, encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        raise OutputError(f"cannot write the batch log {path}: {exc.strerror or exc}") from None
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    with package_log(handler):
        yield


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
        if not result.ok and task.segment is not None:  # the joined result keeps only the first error
            log.debug("failed %s (%s): %s\n%s", result.relpath, result.worker, result.error,
                      (result.trace or "").rstrip())  # fmt: skip
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
            log.debug("done %s in %.1f s (%s)", result.relpath, result.seconds, result.worker)
        else:
            self.summary.failed += 1
            self.summary.errors[result.relpath] = result.error or "failed"
            log.debug("failed %s (%s): %s\n%s", result.relpath, result.worker, result.error,
                      (result.trace or "no traceback: the worker reported no exception").rstrip())  # fmt: skip
        self.bar.update(1)
