"""Training precision: bf16 where it is fast, fp32 where bf16 would slow the backward pass down."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ..runtime import is_depthwise, native_bf16

TRAIN_PRECISIONS = ("auto", "fp32", "bf16")


def training_precision(name: str, device: torch.device) -> str:
    """Precision of forward-only passes: 'auto' is bf16 where the hardware has it natively, else fp32."""
    if name != "auto":
        return name
    return "bf16" if native_bf16(device) else "fp32"


@dataclass(frozen=True)
class PrecisionPlan:
    """Autocast of a training step: `frozen` for the frozen layers up to `boundary`, `trainable` from it on."""

    frozen: str
    trainable: str
    boundary: str | None = None  # first module with trainable parameters; None: one precision throughout

    def __str__(self) -> str:
        return (
            self.trainable
            if self.boundary is None
            else f"{self.frozen} frozen layers, {self.trainable} from {self.boundary}"
        )


def plan_precision(name: str, device: torch.device, model: nn.Module) -> PrecisionPlan:
    """Choose the training precision ('auto': as fast as the hardware allows).

    On CPUs the backward pass of depthwise convolutions (EfficientNet, MobileNet) is several times
    slower in bf16 than in fp32, while their forward pass is faster in bf16. So with 'auto', layers
    that train keep fp32 when depthwise convolutions are among them, and a frozen prefix (with
    --trainable-from or --freeze-backbone) still runs in bf16: it has no backward pass.
    """
    if name != "auto":
        return PrecisionPlan(name, name)
    fast = training_precision(name, device)
    depthwise_trains = any(is_depthwise(m) and m.weight.requires_grad for m in model.modules())
    trainable = "fp32" if device.type == "cpu" and depthwise_trains else fast
    # the outermost module whose parameters all train, e.g. 'blocks.4' for --trainable-from blocks.4
    with_params = [
        (n, list(m.parameters())) for n, m in model.named_modules() if n and any(True for _ in m.parameters())
    ]
    boundary = next((n for n, ps in with_params if all(p.requires_grad for p in ps)), None)
    if trainable == fast or boundary is None or boundary == with_params[0][0]:
        return PrecisionPlan(trainable, trainable)
    return PrecisionPlan(fast, trainable, boundary)


@contextlib.contextmanager
def precision_switch(model: nn.Module, plan: PrecisionPlan, device: torch.device):
    """While active, the forward pass leaves autocast at `plan.boundary` and goes on in fp32."""
    if plan.boundary is None:
        yield
        return

    def switch(module: nn.Module, args: tuple) -> tuple:
        # the autocast context that the step entered restores its own state on exit
        torch.set_autocast_enabled(device.type, False)
        return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    handle = model.get_submodule(plan.boundary).register_forward_pre_hook(switch)
    try:
        yield
    finally:
        handle.remove()
