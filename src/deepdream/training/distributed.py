"""Data-parallel training across processes: `torchrun --nproc-per-node N -m deepdream train ...`.

torchrun (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT) starts one
process per device. Each process trains a DistributedDataParallel copy on its share of every global
batch; gradients are averaged (gloo on the CPU, nccl on CUDA). Only rank 0 writes the run folder,
logs and draws progress. Without those variables everything runs in this one process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..errors import SettingsError

BACKENDS = {"cuda": "nccl"}  # device type -> process-group backend; gloo for everything else


@dataclass(frozen=True)
class Processes:
    """Where this process stands among those training together."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The one process that writes files and talks to the user."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def device(self, device: torch.device) -> torch.device:
        """One accelerator per process on a node; CPU processes share the CPU."""
        if device.type == "cuda" and self.distributed:
            return torch.device("cuda", self.local_rank)
        return device

    def share(self, batch: int) -> slice:
        """This process's rows of a global batch (its length a multiple of `world`)."""
        return slice(self.rank, batch, self.world)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over all processes (epoch loss sums, counts, CPU seconds)."""
        if not self.distributed:
            return list(values)
        # nccl reduces only tensors on the process's GPU
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def gather_rows(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """Reassemble rows computed as `share(n)` by every process into the full N x ... tensor."""
        if not self.distributed:
            return local
        parts: list[torch.Tensor | None] = [None] * self.world
        dist.all_gather_object(parts, local.cpu())
        out = torch.empty((n, *local.shape[1:]), dtype=local.dtype)
        for rank, part in enumerate(parts):
            out[rank : n : self.world] = part
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model that trains: a DistributedDataParallel copy when distributed, else the model itself."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)


def launched() -> Processes:
    """This process's place as the launcher's environment describes it (one process when none)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Processes(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Processes]:
    """Join the launcher's process group for the duration (no-op for one process); yield this process's place."""
    procs = launched()
    if not procs.distributed or dist.is_initialized():
        yield procs
        return
    device = procs.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(BACKENDS.get(device.type, "gloo"))
    except (RuntimeError, ValueError) as exc:
        raise SettingsError(f"cannot join the distributed run (rank {procs.rank} of {procs.world}): {exc}") from exc
    try:
        yield procs
        # leave together: a process that tore its group down while rank 0 still wrote the report was once
        # seen to abort ("terminate called without an active exception") and fail the whole run
        dist.barrier()
    finally:
        dist.destroy_process_group()
