"""`TextSettings`: everything that determines a text dream, frozen, saved with the output and read back."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import SettingsError
from ..runtime import check_seed
from ..settings import PRECISION_CHOICES
from .epo import SearchOptions
from .registry import DEFAULT_MODEL

START_CHOICES = ("windows", "sample", "random")  # the keys of epo.STARTS (a test keeps them equal)


@dataclass(frozen=True)
class TextSettings:
    model: str = DEFAULT_MODEL
    layer: str | None = None  # MLP (neurons) or block (energy, direction); see `deepdream layers --model`
    neuron: int | None = None
    direction: str | None = None  # .pt / .npy vector as wide as `layer`
    target_token: str | None = None  # next-token objective: exactly one token, e.g. " dog"
    position: int = -1  # token the objective is read at (EPO: the last)
    text: str | None = None  # start sentence; None dreams from nothing
    start: str = "windows"  # from nothing: windows of texts the model samples, its samples, or random tokens
    samples: int = 64  # texts sampled for the starts from nothing; each slot begins with the best for its fitness
    keep: tuple[int, ...] = ()  # token indices of `text` never edited
    length: int = 12  # tokens dreamed from nothing; the most a start sentence may hold
    iterations: int = 50
    population: int = 8
    children: int = 6
    topk: int = 32
    lambda_min: float = 0.1
    lambda_max: float = 10.0
    restart_every: int = 10
    fluency: float = 1.0  # weight of a swap's own log-probability when candidates are ranked (0: gradient only)
    anchored: int = 2  # extra slots kept at the start texts' cross-entropy (from a sentence: 1.5x its own)
    seed: int | None = None
    device: str = "cpu"
    precision: str = "auto"  # the search's arithmetic (auto: bf16 where native); reported figures are fp32

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise SettingsError(message)

        need(
            isinstance(self.length, int) and not isinstance(self.length, bool) and self.length >= 1,
            f"length must be a positive number of tokens, got {self.length!r}",
        )
        need(isinstance(self.position, int), f"position must be an integer, got {self.position!r}")
        need(
            self.layer is not None or self.target_token is not None,
            "give --layer (with --neuron or --direction, or alone for its energy) or --target-token",
        )
        need(
            self.neuron is None or (isinstance(self.neuron, int) and self.neuron >= 0),
            f"neuron must be an index >= 0, got {self.neuron!r}",
        )
        need(
            self.layer is not None or (self.neuron is None and self.direction is None),
            "--neuron and --direction need --layer",
        )
        need(self.target_token is None or self.target_token != "", "the target token is empty")
        need(self.text is None or bool(self.text.strip()), "the start text is empty")
        need(not self.keep or self.text is not None, "--keep marks tokens of a start text: give one")
        need(self.start in START_CHOICES, f"start must be one of {', '.join(START_CHOICES)}, got {self.start!r}")
        need(all(isinstance(i, int) and i >= 0 for i in self.keep), "--keep takes token indices >= 0")
        need(
            self.precision in PRECISION_CHOICES,
            f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}",
        )
        need(
            isinstance(self.samples, int) and not isinstance(self.samples, bool) and self.samples >= 1,
            f"samples must be a positive number of texts, got {self.samples!r}",
        )
        if self.seed is not None:
            check_seed(self.seed)
        self.search()  # checks iterations, population, lambdas

    def search(self) -> SearchOptions:
        return SearchOptions(
            self.iterations,
            self.population,
            self.children,
            self.topk,
            self.lambda_min,
            self.lambda_max,
            self.restart_every,
            self.fluency,
            self.anchored,
        )

    def replace(self, **changes: Any) -> "TextSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["keep"] = list(self.keep)
        return values

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The default values (no objective yet, so not a valid settings object alone)."""
        return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default for f in dataclasses.fields(cls)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "TextSettings":
        """Settings from a dict (a dreams.json's `settings`): unknown keys and wrong types are SettingsErrors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(f"unknown text setting(s): {', '.join(unknown)}")
        values = dict(values)
        if "keep" in values:
            keep = values["keep"]
            if not isinstance(keep, (list, tuple)):
                raise SettingsError(f"keep must be a list of token indices, got {keep!r}")
            values["keep"] = tuple(keep)
        for name in ("lambda_min", "lambda_max", "fluency"):
            if name in values and isinstance(values[name], (int, float)) and not math.isfinite(values[name]):
                raise SettingsError(f"{name.replace('_', '-')} must be finite, got {values[name]}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise SettingsError(str(exc)) from None
