"""Text dreams (EPO on the embedded SmolLM2-135M): speed, memory, and quality against dataset examples.

    python benchmarks/text.py speed                    # the default run: s/iteration, convergence, where time goes
    python benchmarks/text.py quality --neurons 10     # dreams vs the best corpus window, 3 depths
    python benchmarks/text.py sentence                 # a sentence dreamed towards a neuron: kept, fluency, gain
    python benchmarks/text.py nexttoken                # P(target) after the dreamed text vs after a random start

Every part appends one JSON line per measurement to --out (default benchmarks/text-results.jsonl is NOT
written: give a path), so a long run that is stopped keeps what it measured. CPU seconds are printed beside
wall seconds: on a shared machine the wall clock is inflated, CPU time much less so.

Corpus (never tuned on): the prose of Python's own reference topics (`pydoc_data/topics.py`, the text
`help('assert')` shows), indented code and grammar lines dropped, split into windows of the dream's length.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch

from deepdream.text import Neuron, NextToken, dream_text, load_language_model
from deepdream.text.corpus import score_windows, windows
from deepdream.text.epo import random_tokens
from deepdream.text.registry import DEFAULT_MODEL
from deepdream.text.scoring import Scorer

DEPTHS = (5, 15, 25)  # of 30 layers
SENTENCES = (
    "The weather today is mild and the streets are quiet.",
    "She opened the window and looked at the garden.",
    "Our team will present the results at the meeting.",
)
TARGETS = (" dog", " water", " city", " music", " red")


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(out: Path | None, record: dict) -> None:
    print(json.dumps(record), flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")


def converged_at(history: list[dict], share: float = 0.95) -> int:
    """First iteration whose best activation has made `share` of the run's total gain."""
    first, last = history[0]["best_activation"], history[-1]["best_activation"]
    for h in history:
        if h["best_activation"] - first >= share * (last - first):
            return h["iteration"]
    return history[-1]["iteration"]


def prose() -> str:
    """Python's reference topics without code, grammar and underlines."""
    import pydoc_data.topics

    lines = []
    for text in pydoc_data.topics.topics.values():
        for line in text.splitlines():
            if line.strip() and not line.startswith((" ", "\t")) and set(line.strip()) - set("*=-~^"):
                lines.append(line.strip())
    return " ".join(lines)


def speed(args, out) -> None:
    (w0, c0) = clocks()
    lm = load_language_model(DEFAULT_MODEL)
    w1, c1 = clocks()
    emit(out, {"part": "load", "wall_s": round(w1 - w0, 2), "cpu_s": round(c1 - c0, 2)})
    kw = overrides(args)
    result = dream_text(lm=lm, layer=f"model.layers.{DEPTHS[1]}.mlp", neuron=123, seed=0, **kw)
    w2, c2 = clocks()
    its = result.settings.iterations
    emit(
        out,
        {
            "part": "speed",
            "threads": torch.get_num_threads(),
            "iterations": its,
            "precision": result.settings.precision,
            "population": result.settings.population,
            "children": result.settings.children,
            "length": result.settings.length,
            "wall_s": round(w2 - w1, 1),
            "cpu_s": round(c2 - c1, 1),
            "s_per_iteration": round((w2 - w1) / its, 2),
            "cpu_s_per_iteration": round((c2 - c1) / its, 2),
            "converged_at": converged_at(result.history),
            "timings_s": {k: round(v, 1) for k, v in result.timings.items()},
            "peak_rss_mb": round(peak_rss_mb()),
            "best": [round(result.frontier[-1].activation, 3), round(result.frontier[-1].xent, 3)],
            "chosen": result.chosen.text,
        },
    )


def corpus_scores(lm, objectives, length: int, limit: int, cache: Path | None = None):
    """The corpus windows scored for every objective; kept in `cache` (a .pt file) when given, so a long run
    split into parts scores the corpus once."""
    found = windows(lm, prose(), length, limit=limit)
    key = [o.describe() for o in objectives] + [length, limit]
    w, c = clocks()
    saved = torch.load(cache, weights_only=False) if cache is not None and cache.is_file() else None
    if saved is not None and saved["key"] == key:
        scores = saved["scores"]
    else:
        scores = score_windows(lm, objectives, found)
        if cache is not None:
            torch.save({"key": key, "scores": scores}, cache)
    w2, c2 = clocks()
    return scores, {
        "windows": len(found),
        "wall_s": round(w2 - w, 1),
        "cpu_s": round(c2 - c, 1),
        "median_xent": round(float(scores.xent.median()), 3),
    }


def overrides(args) -> dict:
    """--iterations and every --set NAME=VALUE as dream_text keywords (values read as JSON, else text)."""
    kw = {"iterations": args.iterations} if args.iterations else {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            kw[name] = json.loads(value)
        except json.JSONDecodeError:
            kw[name] = value
    return kw


def quality(args, out) -> None:
    lm = load_language_model(DEFAULT_MODEL)
    gen = torch.Generator().manual_seed(args.draw_seed)
    per = [args.neurons // 3 + (i < args.neurons % 3) for i in range(3)]
    picks = [(d, int(n)) for d, k in zip(DEPTHS, per) for n in torch.randperm(1536, generator=gen)[:k]]
    objectives = [Neuron(f"model.layers.{d}.mlp", n) for d, n in picks]
    scores, info = corpus_scores(lm, objectives, 12, args.windows, args.corpus_cache)
    emit(out, {"part": "corpus", **info})
    median = float(scores.xent.median())
    for i, ((depth, neuron), objective) in enumerate(zip(picks, objectives)):
        if args.only and i not in args.only:
            continue
        best_window = int(scores.activation[:, i].argmax())
        w, c = clocks()
        kw = overrides(args)
        result = dream_text(lm=lm, layer=objective.layer, neuron=neuron, seed=i, **kw)
        w2, c2 = clocks()
        fluent = [p for p in result.frontier if p.xent <= median]
        dreamed = max((p.activation for p in fluent), default=float("nan"))
        corpus_best = float(scores.activation[best_window, i])
        emit(
            out,
            {
                "part": "quality",
                "layer": depth,
                "neuron": neuron,
                "corpus_best": round(corpus_best, 3),
                "corpus_text": lm.decode(scores.tokens[best_window].tolist()),
                "dreamed_at_median_xent": round(dreamed, 3),
                "ratio": round(dreamed / corpus_best, 3) if corpus_best > 0 and math.isfinite(dreamed) else None,
                "dream_text": max(fluent, key=lambda p: p.activation).text if fluent else None,
                "best_any_xent": round(result.frontier[-1].activation, 3),
                "ceilings": [round(c, 3) for c in result.ceilings],  # the anchored slots' bounds
                "overrides": kw,
                "precision": result.settings.precision,
                "iterations": result.settings.iterations,
                "wall_s": round(w2 - w, 1),
                "cpu_s": round(c2 - c, 1),
            },
        )


def sentence(args, out) -> None:
    lm = load_language_model(DEFAULT_MODEL)
    for i, text in enumerate(SENTENCES[: args.count]):
        if args.only and i not in args.only:
            continue
        layer = f"model.layers.{DEPTHS[i % 3]}.mlp"
        # the neuron this sentence already excites most at its last token: the dream amplifies it
        scorer = Scorer(lm, Neuron(layer, 0))
        ids = torch.tensor([lm.encode(text)])
        with torch.inference_mode():
            from deepdream.text.taps import TextTaps, resolve_tap

            with TextTaps(lm.model, [resolve_tap(lm.model, layer)]) as rec:
                lm.model(input_ids=torch.cat([torch.tensor([lm.prefix]), ids], 1))
                neuron = int(rec.acts[layer][0, -1].argmax())
        del scorer
        w, c = clocks()
        kw = overrides(args)
        result = dream_text(text, lm=lm, layer=layer, neuron=neuron, seed=i, length=32, **kw)
        w2, c2 = clocks()
        s, d = result.start, result.chosen
        kept = sum(a == b for a, b in zip(s.tokens, d.tokens)) / len(s.tokens)
        emit(
            out,
            {
                "part": "sentence",
                "text": text,
                "dream": d.text,
                "layer": layer,
                "neuron": neuron,
                "kept": round(kept, 3),
                "xent_ratio": round(d.xent / s.xent, 3),
                "activation_ratio": round(d.activation / s.activation, 3) if s.activation > 0 else None,
                "start": [round(s.activation, 3), round(s.xent, 3)],
                "dreamed": [round(d.activation, 3), round(d.xent, 3)],
                "precision": result.settings.precision,
                "iterations": result.settings.iterations,
                "wall_s": round(w2 - w, 1),
                "cpu_s": round(c2 - c, 1),
            },
        )


def nexttoken(args, out) -> None:
    lm = load_language_model(DEFAULT_MODEL)
    allowed = torch.tensor(sorted(set(range(lm.vocab_size)) - set(lm.banned)))
    for i, target in enumerate(TARGETS[: args.count]):
        if args.only and i not in args.only:
            continue
        token = lm.encode(target)[0]
        scorer = Scorer(lm, NextToken(token))
        start = random_tokens(scorer, 1, 12, allowed, torch.Generator().manual_seed(100 + i))
        before = math.exp(float(scorer.score(start).activation))
        w, c = clocks()
        kw = overrides(args)
        result = dream_text(lm=lm, target_token=target, seed=i, **kw)
        w2, c2 = clocks()
        emit(
            out,
            {
                "part": "nexttoken",
                "target": target,
                "p_random_start": float(f"{before:.3g}"),
                "p_chosen": round(math.exp(result.chosen.activation), 4),
                "p_best": round(math.exp(result.frontier[-1].activation), 4),
                "text": result.chosen.text,
                "precision": result.settings.precision,
                "iterations": result.settings.iterations,
                "wall_s": round(w2 - w, 1),
                "cpu_s": round(c2 - c, 1),
            },
        )


PARTS = {"speed": speed, "quality": quality, "sentence": sentence, "nexttoken": nexttoken}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=list(PARTS))
    p.add_argument("--iterations", type=int, help="override the default iterations (fewer on a busy machine)")
    p.add_argument("--neurons", type=int, default=10)
    p.add_argument("--draw-seed", type=int, default=0, help="seed of the neuron draw (0: the issue's neurons)")
    p.add_argument(
        "--only",
        type=lambda v: {int(i) for i in v.split(",")},
        help="only these places (0-based, e.g. 0,1,2) in the drawn neurons, sentences or targets: a long run in parts",
    )
    p.add_argument("--corpus-cache", type=Path, help="quality: keep the scored corpus in this .pt file")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a dream setting (repeatable)")
    p.add_argument("--windows", type=int, default=1500, help="corpus windows scored (evenly spread)")
    p.add_argument("--count", type=int, default=5, help="sentences / target tokens")
    p.add_argument("--out", type=Path, help="append JSON lines here")
    args = p.parse_args()
    PARTS[args.part](args, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
