"""`run_batch`: plan the items, skip what the manifest says is finished, hand the rest to an executor
(local processes or Ray), and record every outcome as it arrives."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from ..errors import OutputError
from ..imagefiles import atomic_write
from ..runtime import Progress, draw_seed, progress_bar
from .local import LocalExecutor, ResultHook, StartHook
from .manifest import DONE, FAILED, MANIFEST_NAME, ItemResult, Manifest
from .plan import BatchItem, BatchJob, plan_batch
from .worker import Task

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
        by_path = {task.item.relpath: task.item for task in tasks}
        with progress_bar(len(items), "batch", "item", enabled=progress) as bar:
            bar.update(len(items) - len(tasks))

            def started(task: Task, worker: str) -> None:
                manifest.started(task.item, worker)
                bar.set_description(task.item.relpath)
                if on_start is not None:
                    on_start(task.item, worker)

            def finished(result: ItemResult) -> None:
                _record(result, by_path[result.relpath], manifest, summary, bar)

            if tasks:
                executor.run(tasks, job, started, finished)
    summary.seconds = time.perf_counter() - began
    return summary


def _record(result: ItemResult, item: BatchItem, manifest: Manifest, summary: BatchSummary, bar: Progress) -> None:
    """Write a returned output (atomically), then the item's manifest row, then count it."""
    if result.ok and result.data is not None:
        try:
            item.output.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(item.output, lambda tmp: tmp.write_bytes(result.data))
        except OSError as exc:
            result = ItemResult(result.relpath, False, result.seconds, f"cannot write {item.output}: {exc}",
                                result.worker)  # fmt: skip
    manifest.finished(result)
    if result.ok:
        summary.done += 1
    else:
        summary.failed += 1
        summary.errors[result.relpath] = result.error or "failed"
    bar.update(1)
