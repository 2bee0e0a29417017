"""Sub-command `text`: dream the text that makes a language model's feature fire (EPO), or score a corpus."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Iterator

from .. import imagefiles, locks
from ..errors import OutputError, SettingsError
from ..settings import DEVICE_CHOICES, PRECISION_CHOICES
from ..text.settings import START_CHOICES
from .args import int_list, non_negative_float, non_negative_int, positive_float, positive_int, seed

SETTINGS_OPTIONS = (
    "model",
    "layer",
    "neuron",
    "direction",
    "target_token",
    "position",
    "keep",
    "length",
    "start",
    "samples",
    "iterations",
    "population",
    "children",
    "topk",
    "lambda_min",
    "lambda_max",
    "restart_every",
    "fluency",
    "anchored",
    "seed",
    "device",
    "precision",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "text",
        help="dream the text that makes a language model's neuron fire",
        description="Dream text for a language model feature (EPO: discrete token search with a fluency "
        "frontier), from random tokens or by editing a sentence; or score every window of a corpus.",
    )
    p.add_argument("text", nargs="?", help="start sentence to dream (omit to dream from nothing)")
    g = p.add_argument_group("model and objective")
    g.add_argument(
        "--model",
        help="language model: smollm2-135m (default, embedded), a Hugging Face id such as "
        "gpt2, or config:FOLDER (random weights from FOLDER/config.json and tokenizer.json)",
    )
    g.add_argument("--layer", help="MLP or block, e.g. model.layers.6.mlp (see 'deepdream layers --model ...')")
    g.add_argument("--neuron", type=non_negative_int, help="MLP neuron (unit of the down projection's input)")
    g.add_argument("--direction", metavar="FILE", help="maximise the projection on a vector (.pt or .npy)")
    g.add_argument("--target-token", metavar="TOKEN", help="the text most followed by this token, e.g. ' dog'")
    g.add_argument("--position", type=int, help="token the objective is read at (default -1, the last)")
    g.add_argument("--device", choices=DEVICE_CHOICES)
    g.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        help="the search's arithmetic (auto: bf16 where the CPU/GPU has it natively); figures shown are fp32",
    )
    g = p.add_argument_group("search")
    g.add_argument("--keep", type=int_list, metavar="I,J-K", help="token indices of the start text never edited")
    g.add_argument(
        "--start",
        choices=START_CHOICES,
        help="from nothing: windows (default) starts from the best windows of longer texts the model writes "
        "itself, sample from its texts of the dream's length, random from uniformly random tokens (EPO's start)",
    )
    g.add_argument(
        "--samples", type=positive_int, help="texts sampled for the starts (64); each slot starts from its best"
    )
    g.add_argument("--length", type=positive_int, help="tokens to dream from nothing; most a start text holds (12)")
    g.add_argument("--iterations", type=positive_int, help="EPO iterations (50)")
    g.add_argument("--population", type=positive_int, help="texts kept, one per fluency weight (8)")
    g.add_argument("--children", type=positive_int, help="one-token swaps tried per text and iteration (6)")
    g.add_argument("--topk", type=positive_int, help="candidate tokens per position from the gradient (32)")
    g.add_argument("--lambda-min", type=positive_float, help="smallest fluency weight (0.1)")
    g.add_argument("--lambda-max", type=positive_float, help="largest fluency weight (10)")
    g.add_argument(
        "--fluency",
        type=non_negative_float,
        help="weight of a swap's own log-probability when candidates are ranked (1; 0: the gradient alone)",
    )
    g.add_argument(
        "--anchored",
        type=non_negative_int,
        help="extra texts kept at the start texts' cross-entropy, from a sentence 1.5x its own (2)",
    )
    g.add_argument("--restart-every", type=non_negative_int, help="iterations between restarts (10; 0 never)")
    g.add_argument("--seed", type=seed)
    g = p.add_argument_group("corpus (dataset examples)")
    g.add_argument("--corpus", metavar="FILE", help="score every window of this UTF-8 text instead of dreaming")
    g.add_argument("--stride", type=positive_int, default=1, help="tokens between corpus windows (1)")
    g.add_argument("--max-windows", type=positive_int, help="score at most this many windows, spread evenly")
    g.add_argument("--top", type=positive_int, default=10, help="windows (or frontier texts) to print (10)")
    g = p.add_argument_group("output")
    g.add_argument("-o", "--output", metavar="JSON", help="write texts, token ids, figures, settings and seed")
    g.add_argument("--plot", metavar="PNG", help="write the frontier and the token-coloured best texts")
    g.add_argument("--config", metavar="JSON", help="a dreams.json this command wrote: run its settings again")
    g.add_argument("--force", action="store_true", help="overwrite existing outputs")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_text)


def read_config(path: str) -> dict:
    """The settings of a dreams.json; SettingsError when it is not one."""
    from ..text.dreaming import FORMAT

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{path} is not a dreams.json this tool wrote ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("settings"), dict):
        raise SettingsError(f"{path} is not a dreams.json this tool wrote (no '{FORMAT}' settings)")
    return {"precision": "fp32", **data["settings"]}  # files from before precision was saved ran in fp32


def settings_from_args(args: argparse.Namespace):
    """Defaults, then the config file, then explicit options: later ones win."""
    from ..text.settings import TextSettings

    values = TextSettings.defaults()
    if args.config:
        values.update(read_config(args.config))
    for name in SETTINGS_OPTIONS:
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    if args.text is not None:
        values["text"] = args.text
    return TextSettings.from_mapping(values)


@contextlib.contextmanager
def claimed(path: str | None, suffix: str, force: bool, inputs: tuple) -> Iterator[Path | None]:
    """A checked, locked output path with the given suffix (None when not asked for)."""
    if path is None:
        yield None
        return
    if Path(path).suffix.lower() != suffix:
        raise OutputError(f"{path}: this output is written as {suffix}")
    output = imagefiles.check_writable(Path(path), force=force, inputs=inputs)
    with locks.hold(output):
        yield imagefiles.check_writable(Path(path), force=force, inputs=inputs)


def _show(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def print_frontier(result, top: int) -> None:
    s = result.settings
    print(
        f"# {result.objective} on {s.model}: Pareto frontier (seed {s.seed}, {s.iterations} iterations, "
        f"{result.seconds:.0f} s)"
    )
    print(f"{'activation':>10} {'x-entropy':>9}  text")
    for p in sorted(result.frontier, key=lambda p: -p.activation)[:top]:
        print(f"{p.activation:10.3f} {p.xent:9.3f}  {_show(p.text)}")


def marked(pieces: list[str], changed: list[bool]) -> str:
    """A text with its changed tokens in [brackets]."""
    return "".join(f"[{_show(p)}]" if c else _show(p) for p, c in zip(pieces, changed))


def print_side_by_side(result) -> None:
    start, dream = result.start, result.chosen
    changed = [a != b for a, b in zip(start.tokens, dream.tokens)]
    kept = changed.count(False)
    print(f"# start beside dream ([edited tokens]; {kept}/{len(changed)} tokens kept)")
    print(f"start  activation {start.activation:8.3f}  x-entropy {start.xent:6.3f}  {marked(start.pieces, changed)}")
    print(f"dream  activation {dream.activation:8.3f}  x-entropy {dream.xent:6.3f}  {marked(dream.pieces, changed)}")


CORPUS_FORMAT = "deepdream-corpus/1"


def run_corpus(args: argparse.Namespace, settings) -> int:
    from ..runtime import progress_bar, resolve_device
    from ..text.corpus import read_corpus, score_windows, windows
    from ..text.dreaming import build_text_objective
    from ..text.registry import load_language_model

    if args.plot:
        raise SettingsError("--corpus prints (and with -o writes) the top windows: --plot is for dreams")
    with claimed(args.output, ".json", args.force, (args.corpus,)) as output:
        corpus = read_corpus(args.corpus)  # a bad file fails before the model loads
        lm = load_language_model(settings.model, resolve_device(settings.device))
        objective = build_text_objective(settings, lm)
        found = windows(lm, corpus, settings.length, args.stride, args.max_windows)
        with progress_bar(len(found), unit="window", enabled=not args.quiet) as bar:
            scores = score_windows(lm, [objective], found, settings.position, progress=bar)
        median = float(scores.xent.median())
        top = [
            {
                "text": lm.decode(found[i].tolist()),
                "tokens": found[i].tolist(),
                "activation": float(scores.activation[i, 0]),
                "cross_entropy": float(scores.xent[i]),
            }
            for i in scores.top(args.top)
        ]
        print(
            f"# {objective.describe()} on {settings.model}: top {len(top)} of {len(found)} windows "
            f"of {settings.length} tokens in {args.corpus} (median x-entropy {median:.3f})"
        )
        print(f"{'activation':>10} {'x-entropy':>9}  text")
        for w in top:
            print(f"{w['activation']:10.3f} {w['cross_entropy']:9.3f}  {_show(w['text'])}")
        if output is not None:
            body = {
                "format": CORPUS_FORMAT,
                "corpus": str(args.corpus),
                "objective": objective.describe(),
                "settings": settings.to_dict(),
                "windows": len(found),
                "stride": args.stride,
                "median_cross_entropy": median,
                "top": top,
            }
            text = json.dumps(body, indent=1, ensure_ascii=False) + "\n"
            imagefiles.atomic_write(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    if output is not None and not args.quiet:
        print(f"wrote {output}", file=sys.stderr)
    return 0


def run_text(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.corpus:
        return run_corpus(args, settings)
    if settings.direction:
        from ..text.dreaming import load_direction

        load_direction(settings.direction)  # a bad file fails before the model loads
    inputs = tuple(f for f in (args.config, settings.direction) if f)
    if args.output and args.plot and Path(args.output).resolve() == Path(args.plot).resolve():
        raise OutputError("-o and --plot name the same file")
    with (
        claimed(args.output, ".json", args.force, inputs) as output,
        claimed(args.plot, ".png", args.force, inputs) as plot,
    ):
        from ..text.dreaming import dream_text

        result = dream_text(settings=settings, progress=not args.quiet)
        print_frontier(result, args.top)
        if result.start is not None:
            print_side_by_side(result)
        if output is not None:
            body = json.dumps(result.to_dict(), indent=1, ensure_ascii=False) + "\n"
            imagefiles.atomic_write(output, lambda tmp: tmp.write_text(body, encoding="utf-8"))
        if plot is not None:
            from ..text.plot import frontier_figure

            frontier_figure(result, plot)
    if not args.quiet:
        written = [str(p) for p in (output, plot) if p is not None]
        if written:
            print(f"wrote {' and '.join(written)}", file=sys.stderr)
    return 0
