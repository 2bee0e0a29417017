"""Where a language model is read: MLP neurons (the input of each MLP's down projection) and block outputs.

A neuron is one unit of an MLP's hidden layer: for Llama-style blocks act(gate(x)) * up(x), for GPT-2 the
activation's output; both are what the down projection receives, so one forward pre-hook reads them all.
Layers are dotted `named_modules()` names; hooks live only inside a `TextTaps` block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelError
from ..hints import did_you_mean

# the MLP's output projection in each family: Llama/Mistral/Qwen, GPT-2, GPT-NeoX (Pythia), OPT/Phi, Mixtral
DOWN_PROJECTIONS = ("down_proj", "c_proj", "dense_4h_to_h", "fc2", "w2")


@dataclass(frozen=True)
class TextTap:
    """A readable place: `name` is what users type; the hook sits on `hook` (its input when `pre`)."""

    name: str
    kind: str  # "mlp": neurons; "block": the residual stream after a block
    hook: str
    pre: bool


def _is_mlp(name: str, module: nn.Module) -> bool:
    return "mlp" in name.rsplit(".", 1)[-1].lower() or type(module).__name__.lower().endswith("mlp")


def find_taps(model: nn.Module) -> dict[str, TextTap]:
    """Every tap in forward order: each block's MLP neurons, then the block's output."""
    taps: dict[str, TextTap] = {}
    for name, module in model.named_modules():
        if not name or not _is_mlp(name, module):
            continue
        child = next((c for c in DOWN_PROJECTIONS if isinstance(getattr(module, c, None), nn.Module)), None)
        if child is None:
            continue
        taps[name] = TextTap(name, "mlp", f"{name}.{child}", True)
        if "." in name:
            block = name.rsplit(".", 1)[0]
            taps[block] = TextTap(block, "block", block, False)
    if not taps:
        raise ModelError(f"found no MLP blocks in {type(model).__name__} (looked for {', '.join(DOWN_PROJECTIONS)})")
    return taps


def resolve_tap(model: nn.Module, name: str) -> TextTap:
    """The tap called `name`; ModelError with the closest names otherwise."""
    taps = find_taps(model)
    if name not in taps:
        mlps = [n for n, t in taps.items() if t.kind == "mlp"]
        hint = did_you_mean(name, taps, fallback=f"; MLP layers are e.g. {', '.join(mlps[:2])} ... {mlps[-1]}")
        raise ModelError(f"unknown layer '{name}' in this language model{hint} (see 'deepdream layers --model ...')")
    return taps[name]


class TextTaps:
    """Context manager recording each tap's activation (B x T x W) on every forward inside it."""

    def __init__(self, model: nn.Module, taps: list[TextTap]):
        self.model, self.taps = model, taps
        self.acts: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def _record(self, name: str, value) -> None:
        self.acts[name] = value[0] if isinstance(value, (tuple, list)) else value

    def __enter__(self) -> "TextTaps":
        modules = dict(self.model.named_modules())
        for tap in self.taps:
            module = modules[tap.hook]
            if tap.pre:
                handle = module.register_forward_pre_hook(lambda m, args, name=tap.name: self._record(name, args))
            else:
                handle = module.register_forward_hook(lambda m, args, out, name=tap.name: self._record(name, out))
            self._handles.append(handle)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.acts = {}


def tap_widths(model: nn.Module, device: torch.device | None = None) -> dict[str, int]:
    """Each tap's width (neurons or hidden size), measured by one forward of two tokens."""
    taps = list(find_taps(model).values())
    device = device or next(model.parameters()).device
    with TextTaps(model, taps) as recorder, torch.inference_mode():
        model(input_ids=torch.zeros(1, 2, dtype=torch.long, device=device))
        return {name: int(value.shape[-1]) for name, value in recorder.acts.items()}
