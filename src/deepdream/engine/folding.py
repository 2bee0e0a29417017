"""Batch norm folded into the convolution before it: the same function with two memory passes fewer.

A frozen BatchNorm2d is a per-channel affine map, so `bn(conv(x))` equals one convolution with scaled
weights and a new bias. On the CPU the memory-bound norm passes (forward and backward) cost about as
much as the convolutions of EfficientNet-Lite0 (see benchmarks/speed.py).
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .taps import OUTPUT, Taps


class FoldedNorm(nn.Module):
    """What is left of a norm layer once folded: its own children (timm's BatchNormAct2d: drop, act).

    The children keep their names, so `blocks.4.0.bn1.act` still names the same layer.
    """

    def __init__(self, norm: nn.Module):
        super().__init__()
        for name, child in norm.named_children():
            self.add_module(name, child)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for child in self.children():
            x = child(x)
        return x


def _conv_norm_pairs(model: nn.Module, probe: torch.Tensor) -> list[tuple[str, str]]:
    """(conv, norm) module names where the norm's input is exactly the conv's output, from one probe pass."""
    modules = dict(model.named_modules())
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # the tensors are kept alive so ids stay unique
    inputs: dict[str, list[torch.Tensor]] = {}
    calls: dict[str, int] = {}

    def on_conv(name):
        def hook(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            outputs[id(output)] = (name, output)

        return hook

    def on_norm(name):
        def hook(module, args):
            inputs.setdefault(name, []).append(args[0])

        return hook

    handles = []
    for name, m in modules.items():
        if type(m) is nn.Conv2d:
            handles.append(m.register_forward_hook(on_conv(name)))
        elif isinstance(m, nn.BatchNorm2d) and not m.training and m.running_mean is not None:
            handles.append(m.register_forward_pre_hook(on_norm(name)))
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    pairs = []
    for norm, args in inputs.items():
        source = outputs.get(id(args[0]))
        if len(args) == 1 and source is not None and calls[source[0]] == 1:  # modules used once only
            pairs.append((source[0], norm))
    return pairs


def fold_batchnorm(model: nn.Module, keep: Iterable[str] = (), probe_size: int = 96) -> nn.Module:
    """A copy of a frozen eval-mode model with every conv -> BatchNorm2d pair folded into the conv
    (and its emulated in-place activations made out-of-place).

    Convolutions named in `keep` (tapped layers) are left alone so their outputs stay what they were.
    The copy is checked against the original on a random probe; if anything differs, or nothing can be
    folded, the original model is returned.
    """
    keep = set(keep)
    device = next(model.parameters()).device
    probe = torch.rand(1, 3, probe_size, probe_size, device=device)
    pairs = [(c, n) for c, n in _conv_norm_pairs(model, probe) if c not in keep]
    if not pairs:
        return model
    folded = copy.deepcopy(model)
    modules = dict(folded.named_modules())
    for conv_name, norm_name in pairs:
        conv, norm = modules[conv_name], modules[norm_name]
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
        )
        memory_format = (
            torch.channels_last
            if conv.weight.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        conv.weight = nn.Parameter(weight.detach().contiguous(memory_format=memory_format), requires_grad=False)
        conv.bias = nn.Parameter(bias.detach(), requires_grad=False)
        parent, _, child = norm_name.rpartition(".")
        setattr(modules[parent], child, FoldedNorm(norm))
    for m in folded.modules():
        # under autograd, in-place ReLU6/SiLU/Hardswish clone their input and copy back (three passes
        # instead of one); only ReLU has a true in-place kernel
        if getattr(m, "inplace", False) is True and not isinstance(m, nn.ReLU):
            m.inplace = False
    names = [*keep, OUTPUT]  # the kept taps and the network's output
    with Taps(model, names) as a, Taps(folded, names) as b, torch.no_grad():
        before, after = a(probe), b(probe)
    same = before.keys() == after.keys() and all(
        after[n].shape == before[n].shape
        and torch.allclose(after[n], before[n], rtol=1e-3, atol=1e-3 * before[n].abs().max().item())
        for n in before
    )
    return folded if same else model
