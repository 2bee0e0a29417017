"""Local workers: this process, or N processes on this machine, each with `job.threads` CPU threads or one GPU.

Built on `concurrent.futures.ProcessPoolExecutor`; each process loads the network once (in the pool's
initializer) and dreams items handed to it one at a time. A process that dies takes only the items
it held: the pool is started again and those items are retried, at most `retries` times each.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import DeepDreamError, SettingsError
from ..models.backbone import Backbone
from ..runtime import resolve_device
from .manifest import ItemResult
from .plan import BatchJob
from .worker import ItemRunner, Task

log = logging.getLogger(__name__)

OVERSUBSCRIPTION = 4  # local worker processes per core (per GPU on CUDA), at most

StartHook = Callable[[Task, str], None]
ResultHook = Callable[[ItemResult], None]

# The runner of a pool's worker process, set once by `_start_worker` in that process (never in the driver);
# a network that would not load is kept as its message, and every item of that worker fails with it.
_RUNNER: ItemRunner | str | None = None


def _start_worker(job: BatchJob, devices: multiprocessing.SimpleQueue) -> None:
    global _RUNNER
    try:
        _RUNNER = ItemRunner(job, device=devices.get())
    except DeepDreamError as exc:
        _RUNNER = str(exc)


def _run_task(task: Task) -> ItemResult:
    if isinstance(_RUNNER, ItemRunner):
        return _RUNNER.run(task)
    return ItemResult(task.key, False, 0.0, str(_RUNNER), f"pid {os.getpid()}")


def worker_devices(job: BatchJob, workers: int) -> list[str | None]:
    """One device per worker: GPUs in turn on a CUDA machine, else the CPU (None: from the settings)."""
    device = resolve_device(job.settings.device)
    if device.type == "cuda":
        return [f"cuda:{i % torch.cuda.device_count()}" for i in range(workers)]
    return [None] * workers


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers(job: BatchJob) -> int:
    """One worker per GPU on a CUDA machine; on the CPU one process (with `job.threads` threads)."""
    return torch.cuda.device_count() if resolve_device(job.settings.device).type == "cuda" else 1


@dataclass(frozen=True)
class LocalExecutor:
    """Run a batch in this process (workers=1) or in a pool of worker processes."""

    workers: int | None = None  # None: one per GPU on a CUDA machine, else 1
    retries: int = 1  # times an item is tried again after its worker process died

    def describe(self) -> str:
        return f"{self.workers or 'default'} local worker{'s' if self.workers != 1 else ''}"

    def check(self, job: BatchJob) -> None:
        """Refuse more processes than this machine can hold: each loads the network, and past a few per core
        (or per GPU) they only wait for each other."""
        workers = self.workers or default_workers(job)
        on_cuda = resolve_device(job.settings.device).type == "cuda"
        units = torch.cuda.device_count() if on_cuda else usable_cores()
        if workers > OVERSUBSCRIPTION * units:
            raise SettingsError(f"{workers} local workers for {units} {'GPU' if on_cuda else 'CPU core'}"
                                f"{'s' if units != 1 else ''}: at most {OVERSUBSCRIPTION} per "
                                f"{'GPU' if on_cuda else 'core'} (use --ray for more machines)")  # fmt: skip

    def run(self, tasks: list[Task], job: BatchJob, on_start: StartHook, on_result: ResultHook,
            backbone: Backbone | None = None) -> None:  # fmt: skip
        """Dream the tasks; `backbone`: the job's network already loaded on the CPU in this process."""
        workers = self.workers or default_workers(job)
        if workers == 1:
            device = worker_devices(job, 1)[0]
            on_cpu = resolve_device(device or job.settings.device).type == "cpu"
            threads = torch.get_num_threads()
            try:  # the job's thread count while it runs here, the caller's again after
                runner = ItemRunner(job, device=device, backbone=backbone if on_cpu else None)
                for task in tasks:
                    on_start(task, runner.identity())
                    on_result(runner.run(task))
            finally:
                torch.set_num_threads(threads)
            return
        pending = list(reversed(tasks))  # popped from the end: the plan's order
        deaths: dict[str, int] = {}
        while pending:
            pending = self._pool_run(pending, job, workers, deaths, on_start, on_result)

    def _pool_run(self, pending: list[Task], job: BatchJob, workers: int, deaths: dict[str, int],
                  on_start: StartHook, on_result: ResultHook) -> list[Task]:  # fmt: skip
        """Feed one pool, `workers` items in flight; returns the items left when a worker process died."""
        workers = min(workers, len(pending))
        context = multiprocessing.get_context("spawn")  # no forked torch thread pools or CUDA state
        devices = context.SimpleQueue()
        for device in worker_devices(job, workers):
            devices.put(device)
        flying: dict[Future, Task] = {}
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(job, devices)) as pool:  # fmt: skip
            while pending or flying:
                while pending and len(flying) < workers:
                    task = pending.pop()
                    try:
                        future = pool.submit(_run_task, task)
                    except BrokenProcessPool:  # a process died since the last wait: this one never started
                        pending.append(task)
                        return self._after_death(flying, pending, deaths, on_result)
                    flying[future] = task
                    on_start(task, "local pool")
                done, _ = wait(flying, return_when=FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    return self._after_death(flying, pending, deaths, on_result)
                for future in done:
                    on_result(future.result())
                    del flying[future]
        return []

    def _after_death(self, flying: dict[Future, Task], pending: list[Task], deaths: dict[str, int],
                     on_result: ResultHook) -> list[Task]:  # fmt: skip
        """A process died: finished items count, the others go back in line unless out of retries."""
        log.warning(
            "a worker process died holding %s: the pool is started again",
            ", ".join(t.key for f, t in flying.items() if not f.done() or f.exception() is not None),
        )
        again = []
        for future, task in flying.items():
            if future.done() and future.exception() is None:
                on_result(future.result())
                continue
            deaths[task.key] = deaths.get(task.key, 0) + 1
            if deaths[task.key] > self.retries:
                on_result(ItemResult(task.key, False, 0.0, "its worker process died", "local pool"))
            else:
                again.append(task)
        return pending + list(reversed(again))
