"""Objectives are values: they name the layers they need and score activations; `+` and `*` compose them.

Every objective is maximised; the one place the sign flips is `ascent.gradient`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .taps import OUTPUT

Acts = Mapping[str, torch.Tensor]


class Objective:
    """Base: `layers` is the set of tap names needed; calling it returns a scalar per batch item."""

    layers: frozenset[str] = frozenset()
    #: True when the score is a mean over spatial positions, so it can be evaluated tile by tile.
    spatial: bool = True

    def __call__(self, acts: Acts) -> torch.Tensor:  # B
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

    def __call__(self, acts: Acts) -> torch.Tensor:
        return sum(t(acts) for t in self.terms)


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

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.weight * self.term(acts)


@dataclass(frozen=True, eq=False)
class Energy(Objective):
    """Mean squared activation of a layer: the classic DeepDream objective."""

    layer: str

    @property
    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Acts) -> torch.Tensor:
        a = acts[self.layer].float()
        return a.pow(2).flatten(1).mean(1)


@dataclass(frozen=True, eq=False)
class Channels(Objective):
    """Mean activation of selected channels of a layer (feature visualisation)."""

    layer: str
    channels: tuple[int, ...]

    @property
    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Acts) -> torch.Tensor:
        a = acts[self.layer].float()  # B x C x H x W
        return a[:, list(self.channels)].flatten(1).mean(1)


@dataclass(frozen=True, eq=False)
class ClassLogProb(Objective):
    """Log-probability of one class. Raw logits can grow while the probability stays flat;
    the log-softmax rises only by beating the other classes."""

    index: int
    layers = frozenset({OUTPUT})
    spatial = False

    def __call__(self, acts: Acts) -> torch.Tensor:
        logits = acts[OUTPUT].float().flatten(1)
        return torch.log_softmax(logits, dim=1)[:, self.index]


@dataclass(frozen=True, eq=False)
class Guide(Objective):
    """Match a guide image's features: each position's feature vector is scored by its dot product
    with the best-matching guide feature (Mordvintsev's guided DeepDream)."""

    layer: str
    guide: torch.Tensor  # N x C guide features, one row per guide position
    spatial = False

    @property
    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Acts) -> torch.Tensor:
        a = acts[self.layer].float().flatten(2)  # B x C x HW
        g = self.guide.to(a.device, a.dtype)
        dots = torch.einsum("bcp,nc->bpn", a, g)  # B x HW x N
        best = dots.argmax(dim=2, keepdim=True).detach()
        return dots.gather(2, best).squeeze(2).mean(1)


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
            out.append((name.strip(), float(weight) if weight else 1.0))
        except ValueError:
            raise ValueError(f"bad layer weight in '{part}' (expected NAME or NAME:WEIGHT)") from None
    return out


def layer_objective(layers: Sequence[tuple[str, float]], channels: Sequence[int] = ()) -> Objective:
    """Weighted sum of energy (or channel) objectives over layers."""
    terms: list[Objective] = []
    for name, weight in layers:
        term = Channels(name, tuple(channels)) if channels else Energy(name)
        terms.append(term if weight == 1.0 else term * weight)
    return terms[0] if len(terms) == 1 else Sum(tuple(terms))
