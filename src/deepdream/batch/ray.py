"""Ray: the same batch on a cluster: a pool of actors fed by the driver as they come free.

Each actor is an `ItemRunner`: the network loads once in its `__init__`, one actor per GPU or per
`cpus_per_worker` CPUs. Files travel through Ray's object store: the driver reads each input and
sends its bytes, the actor returns the encoded output and the driver writes it (atomically) and the
manifest, so nodes need no shared filesystem and the output folder has one writer.

An actor that dies mid-item is restarted by Ray (`max_restarts`), possibly on another node, and
the item is retried there (`max_task_retries`); an item whose retries run out is recorded as failed.
Plain actors rather than Ray Data: a batch needs per-item results as they finish (manifest,
progress) and per-item errors, and Ray core is a fraction of `ray[data]`'s install.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from ..errors import DeepDreamError
from .local import ResultHook, StartHook
from .manifest import ItemResult
from .plan import BatchJob
from .worker import ItemRunner, Task

log = logging.getLogger(__name__)

# Ray binds the machine's own address unless cluster mode is off; this must be set before `import ray`
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def import_ray():
    """The ray module, or a clear error naming the extra to install."""
    if "ray" not in sys.modules:
        for key, value in LOOPBACK_ONLY.items():
            os.environ.setdefault(key, value)  # a cluster this process starts stays on 127.0.0.1
    try:
        import ray
    except ImportError:
        raise DeepDreamError("--ray needs Ray: pip install 'deepdream[ray]'") from None
    return ray


@dataclass(frozen=True)
class RayExecutor:
    """Run a batch on a Ray cluster: `address` ('auto', 'HOST:PORT', 'ray://...') or None for a local one.

    With no address and no Ray connection in this process, a local cluster of `num_cpus` CPUs is started
    on 127.0.0.1 for the batch and stopped after it; an existing connection is used as it is.
    """

    address: str | None = None
    workers: int | None = None  # actors; None: one per GPU, else one per `cpus_per_worker` CPUs
    cpus_per_worker: int | None = None  # CPUs each actor reserves; None: the job's threads
    num_cpus: int | None = None  # CPUs of a local cluster; None: all of this machine's
    retries: int = 2  # restarts of a dead actor, and retries of the item it held

    def describe(self) -> str:
        return f"Ray ({self.address or 'local cluster'})"

    def check(self, job: BatchJob) -> None:
        """Refuse before a batch starts when Ray is not installed."""
        import_ray()

    def run(self, tasks: list[Task], job: BatchJob, on_start: StartHook, on_result: ResultHook,
            backbone: object = None) -> None:  # fmt: skip
        """Dream the tasks on the cluster (`backbone`, a network loaded in this process, is not sent: each actor
        loads its own)."""
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            try:
                _connect(ray, self.address, self.num_cpus)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise DeepDreamError(f"cannot reach the Ray cluster at {self.address}: {exc}") from exc
        try:
            actors = self._actors(ray, job, len(tasks))
            try:
                _feed(ray, actors, tasks, on_start, on_result)
            finally:
                for actor in actors:
                    ray.kill(actor)
        finally:
            if started:
                ray.shutdown()

    def _actors(self, ray, job: BatchJob, count: int) -> list:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = self.cpus_per_worker or job.threads
        per_cpu = max(1, int(resources.get("CPU", 1)) // cpus)
        n = min(count, self.workers or gpus or per_cpu)
        log.debug("%d Ray actors of %d CPUs%s", n, cpus, " and 1 GPU" if gpus else "")
        actor = ray.remote(ItemRunner).options(
            num_cpus=cpus, num_gpus=1 if gpus else 0, max_restarts=self.retries, max_task_retries=self.retries,
        )  # fmt: skip
        return [actor.remote(job) for _ in range(n)]  # each dreams with job.threads threads, as local workers do


def _connect(ray, address: str | None, num_cpus: int | None) -> None:
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is None:
        ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **options)
    else:
        ray.init(address=address, **options)


def _feed(ray, actors: list, tasks: list[Task], on_start: StartHook, on_result: ResultHook) -> None:
    """Each idle actor takes the next task; results are reported as they come, in any order."""
    from ray.exceptions import RayActorError, RayError

    names = dict(zip(actors, ray.get([a.identity.remote() for a in actors])))  # waits for the networks
    idle, waiting = list(actors), list(reversed(tasks))
    flying: dict = {}  # object ref -> (task, actor)
    while waiting or flying:
        while idle and waiting:
            task = waiting.pop()
            try:
                data = task.item.source.read_bytes()  # read when sent: the object store holds only what is in flight
            except OSError as exc:
                on_result(ItemResult(task.key, False, 0.0, f"cannot read {task.item.source}: {exc}", "driver"))
                continue
            actor = idle.pop()
            flying[actor.run.remote(task, data)] = (task, actor)
            on_start(task, names[actor])
        if not flying:
            continue
        [ref], _ = ray.wait(list(flying), num_returns=1)
        task, actor = flying.pop(ref)
        try:
            result = ray.get(ref)
            idle.append(actor)
        except RayActorError as exc:  # it died more often than it may be restarted: it takes no more items
            log.warning("Ray actor %s died holding %s: %s", names[actor], task.key, exc)
            result = ItemResult(task.key, False, 0.0, f"its Ray worker died ({type(exc).__name__})", names[actor])
        except RayError as exc:
            result = ItemResult(task.key, False, 0.0, f"{type(exc).__name__}: {exc}", names[actor])
            idle.append(actor)
        on_result(result)
        if waiting and not idle and not flying:
            for task in reversed(waiting):
                on_result(ItemResult(task.key, False, 0.0, "no Ray worker left", "driver"))
            return
