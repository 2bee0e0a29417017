"""Capture activations at dotted layer names, computing the network only up to the last one needed.

Every activation comes out as B x C x H x W where the layer is spatial at all: token and channels-last
layers are reshaped by the layouts their model carries (models/layouts.py), so objectives, masks and
tiles treat a Vision Transformer like a CNN.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..models.layouts import layouts_of

OUTPUT = ""  # the tap name of the network's final output (the root module in named_modules())


class _Done(Exception):
    """Raised inside a forward hook once every requested activation has been captured."""


class Taps:
    """Forward hooks on named modules; `forward(x)` returns {name: activation}.

    The forward pass stops as soon as every tapped module has run, so only the network up to the
    deepest requested layer is computed. Use as a context manager so the hooks are always removed.
    """

    def __init__(self, model: nn.Module, names: Iterable[str]):
        self.model = model
        self.names = tuple(dict.fromkeys(names))
        modules = dict(model.named_modules())
        missing = [n for n in self.names if n not in modules]
        if missing:
            raise KeyError(f"no such module: {', '.join(missing)}")
        self._acts: dict[str, torch.Tensor] = {}
        self._layouts = layouts_of(model)
        self._size: tuple[int, int] = (0, 0)  # H x W of the input being run, for token grids
        self._active = False  # hooks of other Taps on the same model stay silent during our forward
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not self._active:
                return
            if isinstance(output, (tuple, list)):  # e.g. InceptionOutputs in training mode
                output = output[0]
            layout = self._layouts.get(name)
            self._acts[name] = layout.to_map(output, self._size) if layout is not None else output
            if len(self._acts) == len(self.names):
                raise _Done

        return hook

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._acts, self._active, self._size = {}, True, tuple(x.shape[-2:])
        try:
            self.model(x)
        except _Done:
            pass
        finally:
            self._active = False
        acts, self._acts = self._acts, {}
        return acts

    __call__ = forward

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "Taps":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def layer_shapes(model: nn.Module, names: Iterable[str], size: int, device: torch.device) -> dict[str, tuple[int, ...]]:
    """Output shape (C x H x W) of each named layer for a size x size input; layers without a tensor are left out."""
    with Taps(model, names) as taps, torch.no_grad():
        acts = taps(torch.zeros(1, 3, size, size, device=device))
    return {name: tuple(a.shape[1:]) for name, a in acts.items() if torch.is_tensor(a)}
