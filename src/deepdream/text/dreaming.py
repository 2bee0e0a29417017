"""`dream_text`: the text that makes a feature fire, from random tokens or by editing a sentence (EPO)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ModelError, SettingsError, TextError
from ..runtime import Progress, draw_seed, reporting, resolve_device, resolve_precision
from .epo import STARTS, Frontier, Point, Search, epo, keeps
from .objectives import Direction, LayerEnergy, Neuron, NextToken, TextObjective
from .registry import LanguageModel, load_language_model
from .scoring import Scorer
from .settings import TextSettings

log = logging.getLogger(__name__)

FORMAT = "deepdream-text/1"
# from a sentence, the dream shown beside it keeps this much of the original's fluency and tokens
XENT_RATIO, KEPT_FRACTION = 1.5, 0.5


def load_direction(path: str | Path) -> torch.Tensor:
    """A vector from a .pt (a tensor) or .npy file, loaded without running any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"direction file not found: {path}")
    try:
        if path.suffix.lower() == ".npy":
            import numpy as np

            value = torch.from_numpy(np.load(path, allow_pickle=False).astype("float32"))
        else:
            value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise SettingsError(f"cannot read a direction from {path}: give a .pt tensor or a .npy array") from None
    if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.is_complex():
        raise SettingsError(f"{path} does not hold a vector")
    return value.float().flatten()


def build_text_objective(settings: TextSettings, lm: LanguageModel) -> TextObjective:
    """The sum of what the settings name: a neuron, a direction, the layer's energy, a next token."""
    terms: list[TextObjective] = []
    if settings.neuron is not None:
        terms.append(Neuron(settings.layer, settings.neuron))
    if settings.direction is not None:
        terms.append(Direction(settings.layer, load_direction(settings.direction), Path(settings.direction).name))
    if settings.layer is not None and not terms:
        terms.append(LayerEnergy(settings.layer))
    if settings.target_token is not None:
        ids = lm.encode(settings.target_token)
        if len(ids) != 1:
            pieces = " + ".join(repr(p) for p in lm.pieces(ids)) or "nothing"
            raise SettingsError(
                f"target token {settings.target_token!r} is {len(ids)} tokens ({pieces}) for this "
                "model: give one token (often with its leading space, e.g. ' dog')"
            )
        terms.append(NextToken(ids[0], settings.target_token))
    objective = terms[0]
    for term in terms[1:]:
        objective = objective + term
    return objective


@dataclass
class DreamedText:
    """One text of the result: its tokens and figures, and each token's objective value (for colouring)."""

    text: str
    tokens: list[int]
    activation: float
    xent: float
    iteration: int
    pieces: list[str]
    per_token: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "tokens": self.tokens,
            "activation": self.activation,
            "cross_entropy": self.xent,
            "iteration": self.iteration,
            "pieces": self.pieces,
            "per_token": self.per_token,
        }


@dataclass
class TextDream:
    """The result: the Pareto frontier (by cross-entropy), the start text if any, the one shown, the run."""

    settings: TextSettings
    objective: str
    frontier: list[DreamedText]
    start: DreamedText | None
    chosen: DreamedText
    lambdas: list[float]
    ceilings: list[float] = field(default_factory=list)  # the anchored slots' cross-entropy bounds
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "settings": self.settings.to_dict(),
            "objective": self.objective,
            "frontier": [p.to_dict() for p in self.frontier],
            "start": self.start.to_dict() if self.start else None,
            "chosen": self.chosen.to_dict(),
            "lambdas": self.lambdas,
            "ceilings": self.ceilings,
            "history": self.history,
            "timings": self.timings,
            "seconds": self.seconds,
        }


def choose(texts: list[DreamedText], start: DreamedText | None) -> DreamedText:
    """The dream to show: from a sentence, the highest activation that keeps >= half its tokens at <= 1.5x its
    cross-entropy (the start itself if none is more active); from nothing, the best at fluency weight 1."""
    if start is None:
        return max(texts, key=lambda p: p.activation - p.xent)
    kept = keeps(torch.tensor([p.tokens for p in texts]), torch.tensor(start.tokens), KEPT_FRACTION)
    fits = [p for p, ok in zip(texts, kept.tolist()) if ok and p.xent <= XENT_RATIO * start.xent]
    return max([start, *fits], key=lambda p: p.activation)


def start_tokens(lm: LanguageModel, settings: TextSettings) -> tuple[list[int] | None, torch.Tensor]:
    """The start sentence's ids (None from nothing) and the editable-position mask (T bools)."""
    if settings.text is None:
        return None, torch.ones(settings.length, dtype=torch.bool)
    ids = lm.encode(settings.text)
    if not ids:
        raise TextError("the start text is empty once tokenised")
    limit = min(settings.length, lm.context - len(lm.prefix))
    if len(ids) > limit:
        what = "--length" if settings.length <= lm.context - len(lm.prefix) else "the model's context"
        raise TextError(
            f"the start text is {len(ids)} tokens, longer than {what} ({limit}): raise --length or shorten it"
        )
    editable = torch.ones(len(ids), dtype=torch.bool)
    for i in settings.keep:
        if i >= len(ids):
            raise SettingsError(f"--keep {i} is past the start text's {len(ids)} tokens (0-{len(ids) - 1})")
        editable[i] = False
    if not editable.any():
        raise SettingsError("--keep keeps every token of the start text: nothing is left to dream")
    return ids, editable


def dream_text(
    text: str | None = None,
    *,
    settings: TextSettings | None = None,
    lm: LanguageModel | None = None,
    progress: bool | Progress = False,
    on_iteration: Callable[[Search], None] | None = None,
    **overrides,
) -> TextDream:
    """Dream a text towards the objective the settings name, from `text` (edited) or from random tokens.

    Settings come from `settings` with keyword overrides (`layer="model.layers.6.mlp", neuron=123`); the
    result's settings hold the seed used. `lm` reuses a loaded model (it must be the one `settings.model`
    names). `on_iteration` sees the search after every iteration (a live frontier).
    """
    values = {**(settings.to_dict() if settings else TextSettings.defaults()), **overrides}
    if text is not None:
        values["text"] = text
    settings = TextSettings.from_mapping(values)
    if settings.seed is None:
        settings = settings.replace(seed=draw_seed())
    begun = time.perf_counter()
    if lm is None:
        lm = load_language_model(settings.model, resolve_device(settings.device))
    elif lm.name != settings.model:
        raise ModelError(f"the loaded model is {lm.name}, the settings name {settings.model}")
    settings = settings.replace(precision=resolve_precision(settings.precision, lm.device))
    objective = build_text_objective(settings, lm)
    ids, editable = start_tokens(lm, settings)
    exact = Scorer(lm, objective, settings.position)  # fp32: every figure the result reports
    exact.check_length(len(editable))
    scorer = Scorer(lm, objective, settings.position, precision=settings.precision)  # the search's
    options = settings.search()
    generator = torch.Generator().manual_seed(settings.seed)
    allowed = torch.tensor(sorted(set(range(lm.vocab_size)) - set(lm.banned)), dtype=torch.long)
    if ids is None:
        count = max(settings.samples, options.population)
        start = STARTS[settings.start](scorer, count, settings.length, allowed, generator)
    else:
        start = torch.tensor([ids] * options.population, dtype=torch.long)
    with reporting(progress, options.iterations, unit="it") as bar:

        def step(search: Search) -> None:
            bar.update(1)
            if on_iteration is not None:
                on_iteration(search)

        # from a sentence, the anchored slots hold what the shown dream may be
        bound = {} if ids is None else dict(ceiling_ratio=XENT_RATIO, reference=start[0], min_kept=KEPT_FRACTION)
        search = epo(scorer, start, editable, options, generator, allowed, step, **bound)
    frontier = _texts(lm, exact, search.frontier.points)
    front = {p.tokens for p in frontier_of(frontier).points}  # rescored in fp32, a point can fall behind
    frontier = [t for t in frontier if tuple(t.tokens) in front]
    first = _texts(lm, exact, [Point(tuple(ids), 0, 0, 0)])[0] if ids is not None else None
    # a text the frontier dropped (beaten by one that keeps too few of the sentence's tokens) may still show
    showable = frontier + _texts(lm, exact, search.slots[options.population :]) if first is not None else frontier
    return TextDream(
        settings=settings,
        objective=objective.describe(),
        frontier=frontier,
        start=first,
        chosen=choose(showable, first),
        lambdas=search.lambdas,
        ceilings=search.ceilings,
        history=[vars(r) for r in search.history],
        timings={**search.timings, "total": time.perf_counter() - begun},
        seconds=time.perf_counter() - begun,
    )


def _texts(lm: LanguageModel, scorer: Scorer, points: list[Point]) -> list[DreamedText]:
    """Points as texts, rescored together for their per-token values (figures come from this one pass)."""
    if not points:
        return []
    tokens = torch.tensor([p.tokens for p in points], dtype=torch.long)
    scores = scorer.score(tokens, per_token=True)
    return [
        DreamedText(
            lm.decode(p.tokens),
            list(p.tokens),
            float(a),
            float(x),
            p.iteration,
            lm.pieces(p.tokens),
            [round(v, 5) for v in row],
        )
        for p, a, x, row in zip(points, scores.activation.tolist(), scores.xent.tolist(), scores.per_token.tolist())
    ]


def frontier_of(texts: list[DreamedText]) -> Frontier:
    """Texts as a Pareto frontier of epo Points (those no other text beats on both figures)."""
    return Frontier(Point(tuple(p.tokens), p.activation, p.xent, p.iteration) for p in texts)
