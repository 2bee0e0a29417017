"""Objectives are values: they name the layers they need and score activations; `+` and `*` compose them.

Every objective is maximised; the one place the sign flips is `ascent.gradient`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..errors import ModelError, SettingsError
from ..models.backbone import Backbone
from ..settings import Settings
from .taps import OUTPUT, Taps

Acts = Mapping[str, torch.Tensor]
Weights = Mapping[str, torch.Tensor] | None  # per-layer H x W position weights (tiling); None: plain mean


def _reduce(per_position: torch.Tensor, weights: Weights, layer: str) -> torch.Tensor:
    """Mean over positions of a B x H x W map, or a weighted sum when tiles pass position weights."""
    if weights is None:
        return per_position.flatten(1).mean(1)
    return (per_position * weights[layer]).flatten(1).sum(1)


class Objective:
    """Base: `layers` is the set of tap names needed; calling it returns a scalar per batch item.

    `weights`, when given, replaces the mean over positions by a weighted sum: tiles use it to score
    only their own positions, each with the weight 1 / (positions in the whole image).
    """

    layers: frozenset[str] = frozenset()
    #: True when the score is a mean over spatial positions, so it can be evaluated tile by tile.
    spatial: bool = True

    def __call__(self, acts: Acts, weights: Weights = None) -> torch.Tensor:  # B
        raise NotImplementedError

    def __add__(self, other: "Objective") -> "Objective":
        return Sum((self, other))

    def __mul__(self, weight: float) -> "Objective":
        return Weighted(self, float(weight))

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return Weighted(self, -1.0)

    def __sub__(self, other: "Objective") -> "Objective":
        return Sum((self, -other))


@dataclass(frozen=True, eq=False)
class Sum(Objective):
    terms: tuple[Objective, ...]

    @property
    def layers(self) -> frozenset[str]:
        return frozenset().union(*(t.layers for t in self.terms))

    @property
    def spatial(self) -> bool:
        return all(t.spatial for t in self.terms)

    def __call__(self, acts: Acts, weights: Weights = None) -> torch.Tensor:
        return sum(t(acts, weights) for t in self.terms)


@dataclass(frozen=True, eq=False)
class Weighted(Objective):
    term: Objective
    weight: float

    @property
    def layers(self) -> frozenset[str]:
        return self.term.layers

    @property
    def spatial(self) -> bool:
        return self.term.spatial

    def __call__(self, acts: Acts, weights: Weights = None) -> torch.Tensor:
        return self.weight * self.term(acts, weights)


@dataclass(frozen=True, eq=False)
class Energy(Objective):
    """Mean squared activation of a layer: the classic DeepDream objective."""

    layer: str

    @property
    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Acts, weights: Weights = None) -> torch.Tensor:
        return _reduce(acts[self.layer].float().pow(2).mean(1), weights, self.layer)


@dataclass(frozen=True, eq=False)
class Channels(Objective):
    """Mean activation of selected channels of a layer (feature visualisation)."""

    layer: str
    channels: tuple[int, ...]

    @property
    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Acts, weights: Weights = None) -> torch.Tensor:
        a = acts[self.layer].float()  # B x C x H x W
        return _reduce(a[:, list(self.channels)].mean(1), weights, self.layer)


@dataclass(frozen=True, eq=False)
class ClassLogProb(Objective):
    """Log-probability of one class. Raw logits can grow while the probability stays flat;
    the log-softmax rises only by beating the other classes."""

    index: int
    layers = frozenset({OUTPUT})
    spatial = False

    def __call__(self, acts: Acts, weights: Weights = None) -> torch.Tensor:
        logits = acts[OUTPUT].float().flatten(1)
        return torch.log_softmax(logits, dim=1)[:, self.index]


@dataclass(frozen=True, eq=False)
class Guide(Objective):
    """Match a guide image's features: each position's feature vector is scored by its dot product
    with the best-matching guide feature (Mordvintsev's guided DeepDream)."""

    layer: str
    guide: torch.Tensor  # N x C guide features, one row per guide position

    @property
    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Acts, weights: Weights = None) -> torch.Tensor:
        a = acts[self.layer].float()  # B x C x H x W
        g = self.guide.to(a.device, a.dtype)
        dots = torch.einsum("bchw,nc->bhwn", a, g)  # B x H x W x N
        best = dots.argmax(dim=3, keepdim=True).detach()
        return _reduce(dots.gather(3, best).squeeze(3), weights, self.layer)


def guide_features(acts: torch.Tensor) -> torch.Tensor:
    """N x C feature rows of a guide image's activation (1 x C x H x W)."""
    return acts.detach().float()[0].flatten(1).T.contiguous()


def parse_layer_spec(spec: str) -> list[tuple[str, float]]:
    """'blocks.3:0.5,blocks.4' -> [('blocks.3', 0.5), ('blocks.4', 1.0)]."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            value = math.nan
        if not math.isfinite(value):  # a nan or inf weight would dream a black picture
            raise SettingsError(f"bad layer weight in '{part}' (expected NAME or NAME:WEIGHT, WEIGHT a finite number)")
        out.append((name.strip(), value))
    return out


def layer_objective(layers: Sequence[tuple[str, float]], channels: Sequence[int] = ()) -> Objective:
    """Weighted sum of energy (or channel) objectives over layers."""
    terms: list[Objective] = []
    for name, weight in layers:
        term = Channels(name, tuple(channels)) if channels else Energy(name)
        terms.append(term if weight == 1.0 else term * weight)
    return terms[0] if len(terms) == 1 else Sum(tuple(terms))


def build_objective(backbone: Backbone, settings: Settings, guide: torch.Tensor | None = None) -> Objective:
    """The objective the settings describe: layer energy/channels, plus a class, plus a guide."""
    terms: list[Objective] = []
    try:
        specs = parse_layer_spec(settings.layers) if settings.layers is not None else []
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    layers = [(backbone.resolve_layer(name), weight) for name, weight in specs]
    default_layer = backbone.recommended_layers[0] if backbone.recommended_layers else backbone.layer_names()[-1]
    if guide is not None:
        guide_layer = (
            backbone.resolve_layer(settings.guide_layer)
            if settings.guide_layer
            else (layers or [(default_layer,)])[-1][0]
        )
        with Taps(backbone.model, [guide_layer]) as taps, torch.no_grad():
            acts = taps(backbone.normalize(guide.to(backbone.device)).contiguous(memory_format=torch.channels_last))
        terms.append(Guide(guide_layer, guide_features(acts[guide_layer])))
    if settings.target_class is not None:
        terms.append(ClassLogProb(backbone.resolve_class(settings.target_class)))
    if not layers and (settings.channels or not terms):
        layers = [(default_layer, 1.0)]
    for name, _ in layers if settings.channels else ():
        n = _channel_count(backbone, name)
        bad = [c for c in settings.channels if not 0 <= c < n]
        if bad:
            raise ModelError(f"channel {bad[0]} out of range: {name} has {n} channels (0..{n - 1})")
    if layers:
        terms.append(layer_objective(layers, settings.channels))
    return terms[0] if len(terms) == 1 else sum(terms[1:], terms[0])


def _channel_count(backbone: Backbone, layer: str) -> int:
    with Taps(backbone.model, [layer]) as taps, torch.no_grad():
        size = max(64, backbone.min_size)
        return taps(torch.zeros(1, 3, size, size, device=backbone.device))[layer].shape[1]
