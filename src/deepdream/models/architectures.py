"""Registry of trainable architectures: name -> builder of a classifier with a fresh head for our classes.

Pretrained networks come from the dreaming backbone registry (`deepdream.models.registry`, timm:NAME and
torchvision:NAME included), so the
embedded efficientnet_lite0 weights work offline and torchvision weights are used when cached or
downloadable. Their last linear layer is replaced by one with `num_classes` outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ModelError
from ..hints import did_you_mean
from .backbone import IMAGENET_MEAN, IMAGENET_STD
from .registry import BACKBONES, FAMILIES, build_backbone


@dataclass(frozen=True)
class Net:
    """A classifier and what training and dreaming need to know about it."""

    model: nn.Module
    head: tuple[str, ...]  # modules a --freeze-backbone run trains
    recommended_layers: tuple[str, ...]  # good dream layers, best first
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    min_size: int = 32


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[..., Net]  # build(num_classes, pretrained, weights, **options) -> Net; weights: a local file
    input_size: int  # default training crop
    summary: str
    options: dict[str, Any] = field(default_factory=dict)  # accepted options and their defaults
    has_pretrained: bool = True


# ---------------------------------------------------------------- simple_cnn


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """x + f(x) with f two 3x3 conv-bn-relu layers: depth without slowing early training."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SimpleCNN(nn.Module):
    """A small ResNet-9-style network with batch norm, trained from scratch.

    Stages of 3x3 convolutions halve the resolution and double the width, two of them followed by a
    residual block; global average pooling lets any input of 32 px or more through. About 0.3 GMAC
    at 112 px with width 32.
    """

    def __init__(self, num_classes: int, width: int = 32, dropout: float = 0.2):
        super().__init__()
        w = width
        self.stem = conv_bn(3, w, stride=2)  # 1/2
        self.stage1 = nn.Sequential(conv_bn(w, 2 * w), nn.MaxPool2d(2), Residual(2 * w))  # 1/4
        self.stage2 = nn.Sequential(conv_bn(2 * w, 4 * w), nn.MaxPool2d(2))  # 1/8
        self.stage3 = nn.Sequential(conv_bn(4 * w, 8 * w), nn.MaxPool2d(2), Residual(8 * w))  # 1/16
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(8 * w, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))  # B x 8w x H/16 x W/16
        return self.fc(self.dropout(self.pool(x).flatten(1)))  # B x num_classes


def _simple_cnn(num_classes: int, pretrained: bool, weights: Path | None, width: int = 32, dropout: float = 0.2) -> Net:
    if pretrained or weights is not None:
        raise ModelError("simple_cnn has no pretrained weights; drop --pretrained (it trains from scratch)")
    model = SimpleCNN(num_classes, width=int(width), dropout=float(dropout))
    return Net(model, ("fc",), ("stage3", "stage2", "stage1", "stage3.2"), min_size=32)


# ---------------------------------------------------------------- inception_v3 (the reference wrapper)


def _inception_v3(
    num_classes: int,
    pretrained: bool,
    weights: Path | None,
    aux_logits: bool = False,
    transform_input: bool | None = None,
) -> Net:
    """torchvision InceptionV3 with the reference wrapper's options.

    transform_input re-normalises ImageNet-normalised input to the (x - 0.5) / 0.5 that torchvision's
    weights expect; by default it is on exactly when the weights are pretrained.
    """
    from torchvision.models import inception_v3

    pretrained = pretrained or weights is not None
    if transform_input is None:
        transform_input = pretrained
    model = inception_v3(
        weights=None,
        num_classes=num_classes,
        aux_logits=aux_logits,
        transform_input=transform_input,
        init_weights=not pretrained,
    )
    if pretrained:
        # torchvision's weights (WeightsUnavailable when neither cached nor downloadable) or a local file
        source = BACKBONES["inception_v3"](True, weights).model.state_dict()
        own = model.state_dict()
        # everything but the new heads; the auxiliary classifier keeps its fresh initialisation
        fitting = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(fitting, strict=False)
    head = ("fc", "AuxLogits") if aux_logits else ("fc",)
    # the auxiliary classifier needs Mixed_6e at 17x17 (pool 5/3, then a 5x5 conv): the full 299 px input
    return Net(
        model, head, ("Mixed_5d", "Mixed_6a", "Mixed_6c", "Mixed_6e", "Mixed_5b"), min_size=299 if aux_logits else 75
    )


# ---------------------------------------------------------------- dreaming backbones with a new head


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Swap the last linear layer for a fresh one with `num_classes` outputs; return its dotted name."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(f"{type(model).__name__} has no linear classifier to replace")
    name, old = linears[-1]
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Linear(old.in_features, num_classes))
    return name


def _from_backbone(name: str) -> Callable[..., Net]:
    def build(num_classes: int, pretrained: bool, weights: Path | None) -> Net:
        backbone = build_backbone(name, pretrained, weights)
        model = backbone.model
        head = replace_head(model, num_classes)
        model.requires_grad_(True)
        model.train()
        return Net(model, (head,), backbone.recommended_layers, backbone.mean, backbone.std, backbone.min_size)

    return build


ARCHITECTURES: dict[str, Architecture] = {
    "simple_cnn": Architecture(
        "simple_cnn",
        _simple_cnn,
        112,
        "small ResNet-9-style CNN trained from scratch",
        {"width": 32, "dropout": 0.2},
        False,
    ),
    "efficientnet_lite0": Architecture(
        "efficientnet_lite0", _from_backbone("efficientnet_lite0"), 224, "EfficientNet-Lite0, embedded ImageNet weights"
    ),
    "inception_v3": Architecture(
        "inception_v3",
        _inception_v3,
        299,
        "torchvision InceptionV3 (reference wrapper: aux_logits, transform_input)",
        {"aux_logits": False, "transform_input": None},
    ),
    **{
        name: Architecture(name, _from_backbone(name), 224, f"torchvision {name} (weights when cached or downloadable)")
        for name in ("resnet50", "googlenet", "vgg16", "vgg19")
        if name in BACKBONES
    },
}


def _family_architecture(name: str) -> Architecture | None:
    """timm:NAME / torchvision:NAME as a trainable architecture: the backbone with a new head."""
    family, colon, rest = name.partition(":")
    if not (colon and rest and family in FAMILIES):
        return None
    return Architecture(name, _from_backbone(name), 224, f"{family} {rest} (weights from {family}'s own source)")


def get_architecture(name: str) -> Architecture:
    family = _family_architecture(name)
    if family is not None:
        return family
    if name not in ARCHITECTURES:
        hint = did_you_mean(name, ARCHITECTURES, fallback=f"; choose from {', '.join(ARCHITECTURES)}")
        raise ModelError(f"unknown architecture '{name}'{hint}")
    return ARCHITECTURES[name]


def build_model(
    name: str,
    num_classes: int,
    pretrained: bool = False,
    options: dict[str, Any] | None = None,
    weights: str | Path | None = None,
) -> Net:
    """Build a registered architecture with a `num_classes` head.

    pretrained: start from the backbone's ImageNet weights (embedded, or torchvision's when cached or
    downloadable); weights: from a local state-dict file instead.
    """
    arch = get_architecture(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(arch.options))
    if unknown:
        accepted = ", ".join(arch.options) or "none"
        raise ModelError(f"{name} does not take the option(s) {', '.join(unknown)} (accepted: {accepted})")
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {num_classes}")
    return arch.build(num_classes, pretrained, Path(weights) if weights else None, **{**arch.options, **options})


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def set_trainable(net: Net, *, freeze_backbone: bool = False, trainable_from: str | None = None) -> list[nn.Parameter]:
    """Choose which parameters train; return them in model order.

    freeze_backbone: only the head trains. trainable_from: every parameter registered before the
    module of that dotted name is frozen (e.g. 'blocks.3' fine-tunes the last blocks and the head).
    """
    model = net.model
    if freeze_backbone and trainable_from:
        raise ModelError("use either --freeze-backbone or --trainable-from, not both")
    modules = dict(model.named_modules())
    if trainable_from is not None and (trainable_from not in modules or not trainable_from):
        raise ModelError(
            f"unknown layer '{trainable_from}' for --trainable-from{did_you_mean(trainable_from, modules)}"
        )
    training = not freeze_backbone and trainable_from is None
    for name, p in model.named_parameters():
        if trainable_from is not None and (name == trainable_from or name.startswith(trainable_from + ".")):
            training = True
        in_head = any(name == h or name.startswith(h + ".") for h in net.head)
        p.requires_grad_(training or in_head)
    return [p for p in model.parameters() if p.requires_grad]


def train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """model.train(), except batch norm whose statistics must not move: frozen layers, or all with freeze_bn."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            frozen = m.weight is not None and not m.weight.requires_grad
            if freeze_bn or frozen:
                m.eval()
