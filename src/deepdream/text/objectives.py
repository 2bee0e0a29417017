"""What a text is dreamed towards: values that add and weight, maximised, as in the image engine.

Each objective gives one value per token (B x T) from the recorded activations and the logits; the search
reads it at one position (the last token by default, as EPO does) and plots colour tokens by it.
"""

from __future__ import annotations

import torch

from ..errors import ModelError, SettingsError


class TextObjective:
    """Base: `taps` it reads, `values(acts, logits) -> B x T`, `check(widths)` before any search."""

    taps: tuple[str, ...] = ()

    def values(self, acts: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check(self, widths: dict[str, int]) -> None:
        """ModelError/SettingsError when the objective does not fit the model's taps."""

    def describe(self) -> str:
        raise NotImplementedError

    def __add__(self, other: "TextObjective") -> "TextObjective":
        return Sum(((1.0, self), (1.0, other)))

    def __mul__(self, weight: float) -> "TextObjective":
        return Sum(((float(weight), self),))

    __rmul__ = __mul__


class Neuron(TextObjective):
    """One MLP unit: the down projection's input at `index`."""

    def __init__(self, layer: str, index: int):
        self.layer, self.index, self.taps = layer, int(index), (layer,)

    def values(self, acts, logits):
        return acts[self.layer][..., self.index].float()

    def check(self, widths):
        width = widths[self.layer]
        if not 0 <= self.index < width:
            raise ModelError(f"neuron {self.index} is past the width of {self.layer} ({width} neurons: 0-{width - 1})")

    def describe(self) -> str:
        return f"{self.layer}:{self.index}"


class LayerEnergy(TextObjective):
    """DeepDream's own objective: the mean square of a layer's output."""

    def __init__(self, layer: str):
        self.layer, self.taps = layer, (layer,)

    def values(self, acts, logits):
        return acts[self.layer].float().pow(2).mean(-1)

    def describe(self) -> str:
        return f"energy({self.layer})"


class Direction(TextObjective):
    """The projection of a layer's output on a vector (a probe, a difference of means)."""

    def __init__(self, layer: str, vector: torch.Tensor, label: str = "direction"):
        self.layer, self.vector, self.label, self.taps = layer, vector.detach().float().flatten(), label, (layer,)

    def values(self, acts, logits):
        x = acts[self.layer].float()
        return x @ self.vector.to(x.device)

    def check(self, widths):
        if self.vector.numel() != widths[self.layer]:
            raise SettingsError(
                f"{self.label} has {self.vector.numel()} values but {self.layer} is {widths[self.layer]} wide"
            )
        if not bool(torch.isfinite(self.vector).all()):
            raise SettingsError(f"{self.label} holds NaN or infinite values")

    def describe(self) -> str:
        return f"{self.label}({self.layer})"


class NextToken(TextObjective):
    """The log-probability that `token` comes next: the text most followed by it (the class-dream analogue)."""

    def __init__(self, token: int, label: str = ""):
        self.token, self.label = int(token), label or str(token)

    def values(self, acts, logits):
        return torch.log_softmax(logits.float(), dim=-1)[..., self.token]

    def describe(self) -> str:
        return f"next{self.label!r}"


class Sum(TextObjective):
    """A weighted sum of objectives."""

    def __init__(self, terms: tuple[tuple[float, TextObjective], ...]):
        flat: list[tuple[float, TextObjective]] = []
        for weight, term in terms:  # flatten nested sums so describe() stays one level deep
            if isinstance(term, Sum):
                flat.extend((weight * w, t) for w, t in term.terms)
            else:
                flat.append((weight, term))
        self.terms = tuple(flat)
        self.taps = tuple(dict.fromkeys(tap for _, t in self.terms for tap in t.taps))

    def values(self, acts, logits):
        return sum(w * t.values(acts, logits) for w, t in self.terms)

    def check(self, widths):
        for _, term in self.terms:
            term.check(widths)

    def describe(self) -> str:
        return " + ".join(t.describe() if w == 1 else f"{w:g}*{t.describe()}" for w, t in self.terms)
