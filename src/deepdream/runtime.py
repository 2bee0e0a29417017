"""Where and how computation runs: device, precision, autocast, seeds, progress reporting and log sinks.

Every other module takes these decisions from here, so a dream, a video frame, a sheet tile and a
training step resolve 'auto' the same way.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time
from typing import Callable, Iterator, Protocol

import torch
from torch import nn

from .errors import NonFiniteError, SettingsError

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SEED_LIMIT = 2**31  # seeds drawn here, and the largest a user may give: torch and numpy both accept it


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for 'auto', 'cpu', 'cuda' or 'mps'; SettingsError if it is not there."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingsError("--device cuda requested but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SettingsError("--device mps requested but MPS is not available")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 natively (CUDA with bf16, AVX512-BF16 or AMX CPUs)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    # get_cpu_capability() reports "AVX512" on AMX CPUs, so ask for the instructions themselves
    checks = [getattr(torch.cpu, f, None) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def is_depthwise(module: nn.Module) -> bool:
    """A depthwise convolution: memory-bound on the CPU, where bf16 makes it slower, not faster."""
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def resolve_precision(name: str, device: torch.device, model: nn.Module | None = None) -> str:
    """'auto': bf16 where the hardware runs it natively (CUDA, CPUs with AVX512-BF16/AMX), else fp32.

    On the CPU, networks built on depthwise convolutions (EfficientNet) stay fp32: they are memory-bound
    and bf16 made the embedded network slower (0.83x), while VGG/ResNet/Inception gain 1.6-3.9x
    (benchmarks/precision.py).
    """
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if native_bf16(device) else "fp16"
    if device.type == "cpu" and native_bf16(device):
        return "fp32" if model is not None and any(is_depthwise(m) for m in model.modules()) else "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """Mixed-precision context for a device, or a no-op for fp32."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def draw_seed() -> int:
    """A fresh seed for a run the user did not seed; it is recorded with the output."""
    return random.randrange(SEED_LIMIT)


def check_seed(seed: object) -> int:
    """The seed itself when it is an integer in [0, SEED_LIMIT); SettingsError otherwise (no overflow later)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise SettingsError(f"seed must be an integer from 0 to {SEED_LIMIT - 1}, got {seed}")
    return seed


# ---------------------------------------------------------------- memory


def available_memory(device: torch.device | None = None) -> int:
    """Bytes that can be allocated now: free CUDA memory, else MemAvailable (free + reclaimable cache)."""
    if device is not None and device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 << 30


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.3g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.3g} MiB"


def check_memory(needed: float, what: str, lower: str, device: torch.device | None = None) -> None:
    """Refuse, before anything is allocated, work whose estimated memory exceeds what is available.

    A raw allocation failure is a traceback at best; on Linux, with overcommit, it is the kernel's OOM
    killer minutes later. `lower` names the options that shrink the work (e.g. '--size or --batch-size').
    """
    have = available_memory(device)
    if not math.isfinite(needed) or needed > have:
        where = "GPU memory" if device is not None and device.type == "cuda" else "memory"
        raise SettingsError(f"{what} needs about {_gib(needed)} of {where}, {_gib(have)} is available: lower {lower}")


def saved_bytes(forward: Callable[[torch.Tensor], object], model: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward pass of forward(x): each saved storage once, weights excluded."""
    weights = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward(x)
    return sum(saved.values())


# ---------------------------------------------------------------- numbers


def check_finite(value: torch.Tensor | float, what: str, hint: str) -> None:
    """NonFiniteError when a loss, objective, gradient or image holds NaN or inf: never write garbage."""
    ok = math.isfinite(value) if isinstance(value, (int, float)) else bool(torch.isfinite(value).all())
    if not ok:
        raise NonFiniteError(f"{what} became NaN or infinite ({hint})")


class Progress(Protocol):
    """What long loops report to (a tqdm bar fits, so does `LogProgress`)."""

    def update(self, n: int = 1) -> object: ...

    def set_description(self, desc: str) -> object: ...

    def close(self) -> object: ...


class LogProgress:
    """Plain progress lines for logs: one per description change, at most one per `interval` seconds.

    tqdm off a terminal writes hundreds of carriage-return updates onto one line; a log wants lines.
    """

    def __init__(self, total: int | None, desc: str = "", unit: str = "it", file=None, interval: float = 10.0):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.file = file if file is not None else sys.stderr
        self.interval = interval
        self.start = self.last = time.monotonic()

    def _line(self) -> None:
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        elapsed = time.monotonic() - self.start
        label = f"{self.desc}: " if self.desc else ""
        print(f"{label}{done} {self.unit} ({elapsed:.0f} s)", file=self.file, flush=True)
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.interval:
            self._line()

    def set_description(self, desc: str) -> None:
        if desc != self.desc:
            self.desc = desc
            self._line()

    def close(self) -> None:
        if self.n:
            self._line()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int | None, desc: str = "", unit: str = "it", enabled: bool = True, leave: bool = False):
    """A tqdm bar on a terminal, plain lines off one (logs, CI), a silent bar when disabled.

    Every kind is a context manager with `update`, `set_description` and `close`.
    """
    from tqdm import tqdm

    if enabled and not sys.stderr.isatty():
        return LogProgress(total, desc, unit)
    return tqdm(
        total=total, desc=desc or None, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True, disable=not enabled
    )


def reporting(progress: bool | Progress, total: int | None, unit: str = "step"):
    """A context manager yielding what a loop of `total` steps reports to: a bar of its own (True), a silent
    one (False), or the caller's object, left open (its `total`, when it has one, is set: a studio job or a
    tqdm bar learns the length that only the loop knows)."""
    if isinstance(progress, bool):
        return progress_bar(total, unit=unit, enabled=progress)
    if hasattr(progress, "total"):
        progress.total = total
    return contextlib.nullcontext(progress)


@contextlib.contextmanager
def package_log(handler: logging.Handler) -> Iterator[logging.Handler]:
    """The `deepdream` loggers' records at the handler's level and above go to `handler` while inside (the
    package logger is made at least that verbose); afterwards the logger is put back and the handler closed.
    Front ends choose the sink (stderr, a batch's log, the studio's file); the library only logs."""
    package = logging.getLogger("deepdream")
    before = package.level
    if package.getEffectiveLevel() > handler.level:
        package.setLevel(handler.level)
    package.addHandler(handler)
    try:
        yield handler
    finally:
        package.removeHandler(handler)
        package.setLevel(before)
        handler.close()
