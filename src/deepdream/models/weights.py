"""Weights from files and from torchvision's Weights API: loaded safely, checked, fitted into a network."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError, WeightsUnavailable


def safe_load(path: Path, label: str, what: str) -> object:
    """torch.load(weights_only=True) of a file from anywhere; ModelError saying in one line what it is not.

    torch's own messages advise re-running with weights_only=False, which runs any code a stranger's
    pickle holds: never quoted. Its warnings (e.g. about pickle protocols) are not passed on either.
    """
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(path))
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # empty, truncated, not a torch file, or a pickle of more than tensors
        if path.stat().st_size == 0:
            reason = "it is empty (0 bytes)"
        elif isinstance(exc, pickle.UnpicklingError):
            reason = "it holds pickled Python objects besides tensors (never loaded: they could run code)"
        else:
            reason = "it is truncated, corrupt or no torch file at all"
        raise ModelError(f"cannot load {label}: {reason}, not {what}") from None


def check_finite_weights(state: dict, path: Path) -> None:
    """ModelError when a floating-point tensor holds NaN or inf: such a network only outputs NaN."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModelError(f"{path} holds NaN or infinite weights (first in {key}): not a usable network")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict safely (safetensors, or torch.load with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    state = safe_load(path, f"weights from {path}", "a state dict of tensors (.pth/.pt or .safetensors)")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict of tensors")
    check_finite_weights(state, path)
    # checkpoints saved from DataParallel prefix every key with 'module.'
    return {k.removeprefix("module."): v for k, v in state.items()}


def download_weights(weights, arch: str) -> dict[str, torch.Tensor]:
    """Fetch torchvision weights into the torch cache, or explain how to get them offline."""
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # URLError, socket errors, hash mismatch
        raise WeightsUnavailable(
            f"weights for {arch} are not cached at {cache} and could not be downloaded ({exc.__class__.__name__}); "
            f"on a machine with network access download {weights.url} into {cache.parent}, "
            f"or pass --weights FILE with a local state dict"
        ) from exc
    # aux classifiers of googlenet/inception are not part of the dreaming network
    return {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}


def load_into(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ModelError(f"weights do not fit {name}: {str(exc).splitlines()[-1].strip()}") from exc
    if result.missing_keys:
        missing = ", ".join(result.missing_keys[:3])
        raise ModelError(f"weights do not fit {name}: {len(result.missing_keys)} tensors missing ({missing}, ...)")
