"""Any torchvision classification model as a Backbone (`--model torchvision:NAME`): weights from the
Weights API; normalisation, input size and class names from the weights' own transforms and meta."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import ModelError
from ..hints import did_you_mean
from .adapter import spatial_backbone
from .backbone import Backbone, freeze
from .weights import download_weights, load_into, load_state_dict_file


def _classification_models() -> list[str]:
    from torchvision import models

    return models.list_models(module=models)


def _last_linear(model: nn.Module) -> str | None:
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def torchvision_backbone(name: str, pretrained: bool, weights: Path | None) -> Backbone:
    """`torchvision:NAME`: random weights, the DEFAULT weights (downloaded once), or a local state dict."""
    from torchvision import models

    choices = _classification_models()
    if name not in choices:
        hint = did_you_mean(name, choices, fallback="; see torchvision.models.list_models(module=torchvision.models)")
        raise ModelError(f"unknown torchvision classification model '{name}'{hint}")
    default = models.get_model_weights(name).DEFAULT
    categories = tuple(default.meta["categories"])
    source = "random weights"
    if weights is not None:
        state = load_state_dict_file(weights)
        head = _last_linear(models.get_model(name, weights=None))
        num_classes = state[f"{head}.weight"].shape[0] if f"{head}.weight" in state else len(categories)
        model = models.get_model(name, weights=None, num_classes=num_classes)
        load_into(model, state, f"torchvision:{name}")
        if num_classes != len(categories):
            categories = tuple(f"class {i}" for i in range(num_classes))
        source = str(weights)
    elif pretrained:
        model = models.get_model(name, weights=None)
        load_into(model, download_weights(default, name), f"torchvision:{name}")
        source = f"torchvision {default}"
    else:
        model = models.get_model(name, weights=None)
    transform = default.transforms()  # ImageClassification: mean, std, crop size of these weights
    size = int(transform.crop_size[0])
    return spatial_backbone(
        f"torchvision:{name}",
        freeze(model),
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        size=(size, size),
        categories=categories,
        source=source,
    )
