"""EPO, evolutionary prompt optimisation (Thompson, Straznickas and Sklar, 2024): discrete ascent on tokens.

A population of texts; slot i has its own fluency weight lambda_i (log-spaced) and fitness
activation - lambda_i * cross-entropy. Each iteration one backward pass gives every member's gradient with
respect to its one-hot tokens; the top-k tokens per position (GCG) propose one-token swaps; the children are
scored in batches without autograd, and each slot keeps the best of parents and children for its own fitness.
Every scored text feeds a Pareto frontier (activation up, cross-entropy down), so the best found never gets
worse, restarts included.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from ..errors import NonFiniteError, SettingsError
from ..runtime import autocast
from .scoring import Scorer, Scores
from .taps import TextTaps


@dataclass(frozen=True)
class SearchOptions:
    iterations: int = 50
    population: int = 8
    children: int = 8  # per member and iteration: population x children texts are scored at once
    topk: int = 32  # candidate tokens per position, from the gradient
    lambda_min: float = 0.1
    lambda_max: float = 10.0
    restart_every: int = 10  # 0: never
    fluency: float = 1.0  # weight of a candidate's own log-probability in its score (0: the gradient alone)
    anchored: int = 2  # extra slots keeping the most active text at or below the start texts' cross-entropy

    def __post_init__(self) -> None:
        for name in ("iterations", "population", "children", "topk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingsError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.anchored, bool) or not isinstance(self.anchored, int) or self.anchored < 0:
            raise SettingsError(f"anchored must be 0 or a positive integer, got {self.anchored!r}")
        if not isinstance(self.restart_every, int) or self.restart_every < 0:
            raise SettingsError(f"restart_every must be 0 (never) or a positive integer, got {self.restart_every!r}")
        for name in ("lambda_min", "lambda_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise SettingsError(f"{name.replace('_', '-')} must be a positive finite number, got {value!r}")
        if not isinstance(self.fluency, (int, float)) or not math.isfinite(self.fluency) or self.fluency < 0:
            raise SettingsError(f"fluency must be a finite number >= 0, got {self.fluency!r}")
        if self.lambda_min > self.lambda_max:
            raise SettingsError(f"lambda-min {self.lambda_min:g} is above lambda-max {self.lambda_max:g}")

    def lambdas(self) -> torch.Tensor:
        """Fluency weights, log-spaced from lambda_min to lambda_max (their geometric mean for one slot)."""
        lo, hi = math.log10(self.lambda_min), math.log10(self.lambda_max)
        if self.population == 1:
            return torch.tensor([10 ** ((lo + hi) / 2)])
        return torch.logspace(lo, hi, self.population)


@dataclass(frozen=True)
class Point:
    """One scored text: token ids (without the model's prefix), activation, cross-entropy, when it was found."""

    tokens: tuple[int, ...]
    activation: float
    xent: float
    iteration: int

    def fitness(self, lam: float) -> float:
        return self.activation - lam * self.xent


class Frontier:
    """Pareto frontier: no point has both a higher-or-equal activation and a lower-or-equal cross-entropy
    than another; sorted by cross-entropy (so also by activation)."""

    def __init__(self, points: Iterable[Point] = ()):
        self.points: list[Point] = []
        self.add(points)

    def add(self, points: Iterable[Point]) -> None:
        merged = {p.tokens: p for p in self.points}
        for p in points:
            merged.setdefault(p.tokens, p)
        front: list[Point] = []
        for p in sorted(merged.values(), key=lambda p: (p.xent, -p.activation)):
            if not front or p.activation > front[-1].activation:
                front.append(p)
        self.points = front

    def best(self, lam: float) -> Point:
        """The point of highest activation - lam * cross-entropy."""
        return max(self.points, key=lambda p: p.fitness(lam))

    def __len__(self) -> int:
        return len(self.points)


@dataclass
class Record:
    """After one iteration (0: the start): the best activation on the frontier, each slot's best fitness so far,
    the frontier size, seconds since the search began."""

    iteration: int
    best_activation: float
    best_fitness: list[float]
    frontier_size: int
    seconds: float


@dataclass
class Search:
    frontier: Frontier
    lambdas: list[float]
    ceilings: list[float] = field(default_factory=list)  # the anchored slots' cross-entropy bounds
    slots: list[Point] = field(default_factory=list)  # each slot's text at the end (lambda, then anchored)
    history: list[Record] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent per part of the loop


def _points(tokens: torch.Tensor, scores: Scores, iteration: int) -> list[Point]:
    return [
        Point(tuple(t), a, x, iteration)
        for t, a, x in zip(tokens.tolist(), scores.activation.tolist(), scores.xent.tolist())
        if math.isfinite(a) and math.isfinite(x)
    ]


def random_tokens(
    scorer: Scorer, count: int, length: int, allowed: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """count x length ids drawn uniformly from the allowed ids (EPO's start: unreadable, cross-entropy ~11)."""
    return allowed[torch.randint(len(allowed), (count, length), generator=generator)]


def sampled_tokens(
    scorer: Scorer, count: int, length: int, allowed: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """count x length ids sampled from the model itself after its prefix (one token per forward, key/value
    cached): texts that already read like the model's own (cross-entropy near its entropy), so a short search
    spends its iterations on the activation."""
    return sample_texts(scorer, count, length, allowed, generator)[0]


def sample_texts(
    scorer: Scorer, count: int, length: int, allowed: torch.Tensor, generator: torch.Generator, read: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """count x length ids sampled from the model after its prefix; with `read`, also the objective at every
    token and each token's -log p in its context (count x length each), taken from the sampling's own forward
    passes (one more feeds the last token)."""
    lm = scorer.lm
    mask = torch.full((lm.vocab_size,), -math.inf)
    mask[allowed] = 0.0
    text = torch.empty(count, 0, dtype=torch.long)
    step, cache = torch.tensor(lm.prefix, dtype=torch.long).expand(count, -1), None
    values: list[torch.Tensor] = []
    nll: list[torch.Tensor] = []
    taps = TextTaps(lm.model, scorer.taps) if read else contextlib.nullcontext()
    with torch.inference_mode(), autocast(lm.device, scorer.precision), taps as recorder:
        for _ in range(length + read):
            if step.shape[1]:
                logits, cache = _cached_step(lm.model, step.to(lm.device), cache)
                if read and text.shape[1]:  # this forward fed the text's newest token
                    acts = {name: value[:, -1:] for name, value in recorder.acts.items()}
                    values.append(scorer.objective.values(acts, logits[:, None].to(lm.device)).cpu())
            else:  # no prefix: the first token is uniform
                logits = torch.zeros(count, lm.vocab_size)
            if text.shape[1] == length:
                break
            probs = torch.softmax(logits + mask, dim=-1)
            step = torch.multinomial(probs, 1, generator=generator)
            if read:  # the model's own -log p, not the masked distribution's
                nll.append(-torch.log_softmax(logits, dim=-1).gather(1, step))
            text = torch.cat([text, step], dim=1)
    return text, torch.cat(values, dim=1) if read else None, torch.cat(nll, dim=1) if read else None


def _cached_step(model, ids: torch.Tensor, cache):
    """The last position's logits (B x V, float32 on the CPU) and the key/value cache after `ids`; the cache's
    keyword is `cache` in newer transformers, `past_key_values` before."""
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=ids, use_cache=True, **{name: cache})
    return out.logits[:, -1].float().cpu(), getattr(out, name)


WINDOW_SPAN = 4  # `windows` samples texts this many times the dream's length


def sampled_windows(
    scorer: Scorer, count: int, length: int, allowed: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Windows of `length` tokens inside `count` texts of WINDOW_SPAN x length tokens sampled from the model
    (as `sampled_tokens`): a corpus of the model's own text, read as dataset examples are. One pass reads each
    window in its text's context (the objective at its read position, the mean -log p of its tokens); the
    windows on the first Pareto layers of those two figures (activation up, cross-entropy down), at least
    `count`, are returned with the texts' first windows (`sampled_tokens`' starts, the same draws) to be scored
    alone. For WINDOW_SPAN x the sampling cost, (WINDOW_SPAN - 1) x length + 1 windows per text instead of one
    start: a neuron whose best examples need a context finds one (docs/text.md, third pass)."""
    span = max(length, min(WINDOW_SPAN * length, scorer.lm.context - len(scorer.lm.prefix)))
    texts, values, nll = sample_texts(scorer, count, span, allowed, generator, read=True)
    first, starts = scorer.position % length, span - length + 1
    activation = values[:, first : first + starts].reshape(-1)
    xent = nll.unfold(1, length, 1).mean(-1).reshape(-1)
    found = texts.unfold(1, length, 1).reshape(-1, length)[pareto_layers(activation, xent, count)]
    return torch.cat([texts[:, :length], found]).unique(dim=0)  # the first windows are `sample`'s starts


def pareto_layers(activation: torch.Tensor, xent: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the Pareto front of (activation up, cross-entropy down), then the front of the rest, and so
    on until at least `count` are taken (all, if there are fewer). NaN figures are never taken."""
    left = (activation.isfinite() & xent.isfinite()).nonzero().flatten()
    taken: list[torch.Tensor] = []
    while left.numel() and sum(map(len, taken)) < count:
        order = left[activation[left].argsort(descending=True)]
        order = order[xent[order].argsort(stable=True)]  # by cross-entropy, the most active first among equals
        best = activation[order].cummax(0).values
        front = torch.cat([torch.ones(1, dtype=torch.bool), activation[order][1:] > best[:-1]])
        taken.append(order[front])
        left = order[~front]
    return torch.cat(taken) if taken else left


STARTS = {"windows": sampled_windows, "sample": sampled_tokens, "random": random_tokens}  # from nothing


def epo(
    scorer: Scorer,
    start: torch.Tensor,
    editable: torch.Tensor,
    options: SearchOptions,
    generator: torch.Generator,
    allowed: torch.Tensor,
    on_iteration: Callable[[Search], None] | None = None,
    ceiling_ratio: float = 1.0,
    reference: torch.Tensor | None = None,
    min_kept: float = 0.0,
) -> Search:
    """Run EPO from `start` (N x T ids, N >= population: each slot begins with the best of them for its own
    fitness); only positions where `editable` (T bools) is set change.

    Besides the population's lambda slots, `options.anchored` slots each keep the most active text whose
    cross-entropy is at most `ceiling_ratio` x a quantile of the start texts' (their median to their upper
    quartile, spread over the slots): from nothing, as fluent as the model's own samples; from a sentence,
    the bound the shown dream must meet. A fixed lambda lands at a different cross-entropy for every
    objective, so without them the fluent end of the frontier gets whatever slots happen to land there.
    Their lambda, used only to propose candidates, rises while fewer than half of their children meet the
    bound and falls otherwise (a Lagrange multiplier found by the search). With a `reference` text (the
    sentence), an anchored slot only holds texts that keep at least `min_kept` of its tokens in place: the
    shown dream's other condition, which the frontier (activation against cross-entropy) cannot see."""

    def holds(texts: torch.Tensor) -> torch.Tensor:
        """Which texts (N x T) an anchored slot may hold (N bools)."""
        if reference is None:
            return torch.ones(len(texts), dtype=torch.bool)
        return keeps(texts, reference, min_kept)

    scores = scorer.score(start)
    fixed = options.lambdas()
    finite = scores.xent[scores.xent.isfinite()]
    quantiles = torch.linspace(0.5, 0.75, options.anchored)  # one slot: the median
    bounds = ceiling_ratio * finite.quantile(quantiles) if len(finite) else quantiles + math.inf
    lambdas = torch.cat([fixed, torch.full((options.anchored,), float(fixed.log().mean().exp()))])
    ceilings = torch.cat([torch.full((options.population,), math.inf), bounds])
    pick = _best_per_slot(slot_fitness(scores, lambdas, ceilings, holds(start)))
    pop, first = start[pick].clone(), _points(start, scores, 0)
    scores = Scores(scores.activation[pick], scores.xent[pick])
    search = Search(
        Frontier(first),
        fixed.tolist(),
        bounds.tolist(),
        timings=dict.fromkeys(("gradient", "children", "scoring", "selection"), 0.0),
    )
    if not search.frontier.points:
        raise NonFiniteError("the objective or the cross-entropy is NaN or infinite for every start text")
    positions = editable.nonzero().flatten()
    banned = torch.ones(scorer.lm.vocab_size, dtype=torch.bool)
    banned[allowed] = False
    slots = options.population + options.anchored
    n, k = slots * options.children, min(options.topk, len(allowed))
    stuck_since = slot_fitness(scores, lambdas, ceilings, holds(pop)).diagonal()  # fitness at the last restart
    started = time.perf_counter()
    search.history.append(
        Record(
            0,
            search.frontier.points[-1].activation,
            [search.frontier.best(lam).fitness(lam) for lam in search.lambdas],
            len(search.frontier),
            0.0,
        )
    )
    for it in range(1, options.iterations + 1):
        t0 = time.perf_counter()
        grad, _, logp = scorer.gradients(pop, lambdas)  # P x T x V each
        top = candidates(grad, logp, pop, lambdas, options.fluency, banned, k)  # P x T x k
        t1 = time.perf_counter()
        parent = torch.arange(slots).repeat_interleave(options.children)
        where = positions[torch.randint(len(positions), (n,), generator=generator)]
        choice = torch.randint(k, (n,), generator=generator)
        kids = pop[parent].clone()
        kids[torch.arange(n), where] = top[parent, where, choice]
        t2 = time.perf_counter()
        kid_scores = scorer.score(kids)
        t3 = time.perf_counter()
        pool = torch.cat([pop, kids])
        act = torch.cat([scores.activation, kid_scores.activation])
        xent = torch.cat([scores.xent, kid_scores.xent])
        pick = slot_fitness(Scores(act, xent), lambdas, ceilings, holds(pool)).argmax(dim=1)  # P x (P + n) -> P
        pop, scores = pool[pick].clone(), Scores(act[pick], xent[pick])
        met = (kid_scores.xent.view(slots, options.children) <= ceilings[:, None]).float().mean(dim=1)
        step = torch.where(met < 0.5, 1.25, 0.8)
        lambdas = torch.where(ceilings.isfinite(), (lambdas * step).clamp(1e-3, 1e3), lambdas)
        search.frontier.add(_points(kids, kid_scores, it))
        if options.restart_every and it % options.restart_every == 0 and it < options.iterations:
            pop, scores, stuck_since = _restart(
                scorer,
                pop,
                scores,
                search.frontier,
                lambdas,
                ceilings,
                holds,
                stuck_since,
                positions,
                allowed,
                generator,
                it,
            )
        t4 = time.perf_counter()
        for key, seconds in zip(search.timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            search.timings[key] += seconds
        best = [search.frontier.best(lam).fitness(lam) for lam in search.lambdas]
        search.history.append(
            Record(it, search.frontier.points[-1].activation, best, len(search.frontier), time.perf_counter() - started)
        )
        if on_iteration is not None:
            on_iteration(search)
    search.slots = _points(pop, scores, options.iterations)
    return search


def candidates(
    grad: torch.Tensor,
    logp: torch.Tensor,
    tokens: torch.Tensor,
    lambdas: torch.Tensor,
    fluency: float,
    banned: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """The k replacement tokens per member and position (P x T x k ids, on the CPU): the k - k // 2 best by
    the fluent score, then the k // 2 best by the gradient alone (a token in both is proposed twice).

    The fluent score is the gradient's linear estimate of the fitness change plus `fluency` times the exact
    change of the slot's -lambda * cross-entropy through the new token's own log-probability, which the
    gradient cannot see (the predicted token is an index, not an input): those candidates stay readable,
    where the fluent end of the frontier lies. The gradient's own half keeps the search exploring where the
    neuron's scale is small beside the log-probabilities. The current token and banned ids are never proposed.
    With `fluency` 0 both halves are the gradient's top k.
    """
    grad = grad.clone()
    grad[..., banned.to(grad.device)] = -math.inf
    grad.scatter_(-1, tokens.to(grad.device).unsqueeze(-1), -math.inf)  # a swap to the same token is no child
    if not fluency:
        return grad.topk(k, dim=-1).indices.cpu()
    weight = (fluency * lambdas / tokens.shape[1]).to(grad.device)
    fluent = (grad + weight[:, None, None] * logp.to(grad.device)).topk(k - k // 2, dim=-1).indices
    return torch.cat([fluent, grad.topk(k // 2, dim=-1).indices], dim=-1).cpu()


def keeps(texts: torch.Tensor, reference: torch.Tensor, fraction: float) -> torch.Tensor:
    """Which texts (N x T) keep at least `fraction` of the reference's T tokens in place (N bools)."""
    return (texts == reference).float().mean(dim=1) >= fraction


def slot_fitness(
    scores: Scores, lambdas: torch.Tensor, ceilings: torch.Tensor, holds: torch.Tensor | None = None
) -> torch.Tensor:
    """Slots x texts: activation - lambda * cross-entropy for a lambda slot (infinite ceiling); for an
    anchored slot the activation of a text at or below its ceiling, above every text over it, which rank by
    cross-entropy (the nearest to the bound first), and -inf for a text outside `holds` (texts' bools). NaN
    is -inf."""
    act, xent = scores.activation[None], scores.xent[None]
    weighed = act - lambdas[:, None] * xent
    floor = torch.nan_to_num(act, nan=0.0).min() - 1  # below every text's activation
    bounded = torch.where(xent <= ceilings[:, None], act, floor - (xent - ceilings[:, None]))
    if holds is not None:
        bounded = bounded.masked_fill(~holds[None], -math.inf)
    fitness = torch.where(ceilings[:, None].isfinite(), bounded, weighed)
    return fitness.masked_fill((act.isnan() | xent.isnan()).expand_as(fitness), -math.inf)


def _best_per_slot(fitness: torch.Tensor) -> torch.Tensor:
    """For each slot (a row of slots x texts fitness), the index of its fittest text, each text used once
    while there are texts to spare (slots of close lambdas would otherwise all start alike)."""
    taken: list[int] = []
    for row in fitness:
        order = row.argsort(descending=True).tolist()
        taken.append(next((i for i in order if i not in taken), order[0]))
    return torch.tensor(taken)


def _restart(
    scorer, pop, scores, frontier, lambdas, ceilings, holds, stuck_since, positions, allowed, generator, iteration
):
    """Slots whose fitness has not risen since the last restart jump to a random frontier point with a
    quarter of their editable tokens redrawn: an escape from a local optimum (the frontier keeps the best).
    An anchored slot jumps to a random frontier point it may hold within its ceiling, unchanged (a redrawn
    text would rarely meet the bound), and stays if there is none."""
    fitness = slot_fitness(scores, lambdas, ceilings, holds(pop)).diagonal()
    stuck = (fitness <= stuck_since + 1e-6).nonzero().flatten()
    if len(stuck):
        pop = pop.clone()
        redraw = max(1, len(positions) // 4)
        for slot in stuck.tolist():
            ceiling = float(ceilings[slot])
            if math.isfinite(ceiling):  # anchored
                points = [p for p in frontier.points if p.xent <= ceiling and holds(torch.tensor([p.tokens]))[0]]
                if points:
                    pop[slot] = torch.tensor(points[int(torch.randint(len(points), (1,), generator=generator))].tokens)
                continue
            point = frontier.points[int(torch.randint(len(frontier.points), (1,), generator=generator))]
            pop[slot] = torch.tensor(point.tokens)
            where = positions[torch.randperm(len(positions), generator=generator)[:redraw]]
            pop[slot, where] = allowed[torch.randint(len(allowed), (len(where),), generator=generator)]
        fresh = scorer.score(pop[stuck])
        activation, xent = scores.activation.clone(), scores.xent.clone()
        activation[stuck], xent[stuck] = fresh.activation, fresh.xent
        scores = Scores(activation, xent)
        frontier.add(_points(pop[stuck], fresh, iteration))
        fitness = slot_fitness(scores, lambdas, ceilings, holds(pop)).diagonal()
    return pop, scores, fitness
