"""Argument types and option groups shared by several sub-commands."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import Iterator

from .. import imagefiles, locks
from ..errors import SettingsError
from ..runtime import check_seed
from ..settings import (
    DEVICE_CHOICES,
    INITS,
    PRECISION_CHOICES,
    PRESETS,
    Settings,
    from_mapping,
    index_list,
    load_config,
    preset,
)

FLOAT_LIMIT = 3.4e38  # tensors are float32: a larger number overflows in the first operation that uses it


def seed(text: str) -> int:
    """An integer seed in the range every random generator accepts (runtime.SEED_LIMIT)."""
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number(text: str, ok, wanted: str) -> float:
    """float(text) if ok(value) and a float32 tensor can hold it (no nan, inf or overflow)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(value) and abs(value) <= FLOAT_LIMIT and ok(value)):
        raise argparse.ArgumentTypeError(f"must be {wanted} of at most {FLOAT_LIMIT:g} in size, got {text}")
    return value


def finite_float(text: str) -> float:
    return _number(text, lambda v: True, "a finite number")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def positive_float(text: str) -> float:
    return _number(text, lambda v: v > 0, "a positive number")


def int_in(low: int, high: int):
    """An argparse type: an integer from low to high (a typo of many digits is refused, not allocated)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got {text}")
        return value

    return parse


def float_in(low: float, high: float, *, open_low: bool = False, open_high: bool = False):
    """An argparse type: a number between low and high, each end included unless open_low / open_high."""
    left, right = "(" if open_low else "[", ")" if open_high else "]"

    def ok(v: float) -> bool:
        return (v > low if open_low else v >= low) and (v < high if open_high else v <= high)

    def parse(text: str) -> float:
        value = _number(text, lambda v: True, "a finite number")
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be in {left}{low:g}, {high:g}{right}, got {text}")
        return value

    return parse


def cpu_threads(text: str) -> int:
    """A thread count from 1 to the CPU cores this process may use: more only oversubscribes them."""
    return int_in(1, usable_cores())(text)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def non_negative_int(text: str) -> int:
    return 0 if text.strip() == "0" else positive_int(text)


def unit_float(text: str) -> float:
    value = positive_float(text) if text.strip() not in ("0", "0.0") else 0.0
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def non_negative_float(text: str) -> float:
    return _number(text, lambda v: v >= 0, "a number >= 0")


def size(text: str) -> tuple[int, int]:
    """'512x384' -> (512, 384) as width, height."""
    parts = text.lower().split("x")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"size must look like WIDTHxHEIGHT, got '{text}'")
    return positive_int(parts[0]), positive_int(parts[1])


def int_list(text: str) -> tuple[int, ...]:
    """'0-3,7' -> (0, 1, 2, 3, 7)."""
    try:
        out = index_list(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not out:
        raise argparse.ArgumentTypeError("empty list")
    return out


def name_list(text: str) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b')."""
    names = tuple(filter(None, (p.strip() for p in text.split(","))))
    if not names:
        raise argparse.ArgumentTypeError("empty list")
    return names


class Deprecated(argparse.Action):
    """An old spelling kept for one release: stores like its new one, with a one-line warning on stderr."""

    RENAMED = {"--blend": "--octave-blend"}

    def __call__(self, parser, namespace, values, option_string=None):
        new = self.RENAMED.get(option_string, self.dest)
        warning = f"{option_string} is deprecated, use {new} (the old spelling goes in the next release)"
        print(f"deepdream: warning: {warning}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def model_name(text: str) -> str:
    """A registered backbone, or timm:NAME / torchvision:NAME (the library checks NAME when it builds it)."""
    from ..models.registry import is_backbone_name, unknown_model_hint

    if is_backbone_name(text):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: '{text}'{unknown_model_hint(text)}")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    from ..models.registry import list_backbones

    g = parser.add_argument_group("network")
    g.add_argument(
        "--model",
        type=model_name,
        metavar="NAME",
        help=f"backbone: {', '.join(list_backbones())} (default efficientnet_lite0, embedded), "
        "or any timm:NAME / torchvision:NAME image model",
    )
    g.add_argument(
        "--ensemble",
        type=name_list,
        metavar="NAME,...",
        help="--init fourier/maco: also make the picture for these networks (names as for --model)",
    )
    g.add_argument("--weights", metavar="FILE", help="local state dict (.pth/.safetensors) instead of downloading")
    g.add_argument("--checkpoint", metavar="FILE", help="a model trained with 'deepdream train'")
    g.add_argument("--device", choices=DEVICE_CHOICES)


def add_dream_options(parser: argparse.ArgumentParser) -> None:
    """Every Settings field as an option; all default to None so presets and configs can fill them."""
    add_model_options(parser)
    g = parser.add_argument_group("objective")
    g.add_argument("--layers", help="NAME[:WEIGHT],... or layer indices (see 'deepdream layers')")
    g.add_argument("--channels", type=int_list, help="channels of the layers to maximise, e.g. 0-7,12")
    g.add_argument("--target-class", help="class name or index to dream towards")
    g.add_argument("--guide", metavar="IMAGE", help="dream towards the features of a guide image")
    g.add_argument("--guide-layer", help="layer for --guide (default: the last of --layers)")
    g.add_argument("--mask", metavar="IMAGE", help="where to dream: white dreams, black keeps the input, grey blends")
    g = parser.add_argument_group("algorithm")
    g.add_argument("--iterations", type=positive_int, help="ascent steps per octave")
    g.add_argument("--octaves", type=positive_int)
    g.add_argument("--octave-scale", type=positive_float)
    g.add_argument("--octave-mode", choices=("detail", "blend"), help="detail re-injection, or the VGG19 blur+blend")
    g.add_argument("--octave-blend", type=unit_float, help="weight of the dreamed smaller octave (--octave-mode blend)")
    g.add_argument("--blend", dest="octave_blend", type=unit_float, action=Deprecated, help=argparse.SUPPRESS)
    g.add_argument("--step-size", type=positive_float)
    g.add_argument("--optimizer", choices=("ascent", "sgd", "adam"))
    g.add_argument("--jitter", type=non_negative_int, help="max random shift (roll) in pixels per step")
    g.add_argument("--smoothing", type=non_negative_float, help="Gaussian sigma applied to the gradient")
    g.add_argument("--seed", type=seed)
    g.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        help="auto (default): bf16 on CUDA and on CPUs with native bf16, except depthwise networks on the CPU",
    )
    g.add_argument(
        "--tile-size",
        type=positive_int,
        help="compute gradients in tiles of this size (default: from free memory and the image size)",
    )
    g = parser.add_argument_group("image")
    g.add_argument("--max-size", type=positive_int, help="cap on the long side (default 1024)")
    g.add_argument(
        "--init",
        choices=INITS,
        help="start from the image, grey noise, or a feature visualisation: "
        "fourier (lucid's spectrum) or maco (only the phase moves, amplitude of real photos)",
    )
    g.add_argument("--size", type=size, help="WIDTHxHEIGHT for --init noise/fourier/maco")
    g = parser.add_argument_group("settings")
    g.add_argument("--preset", choices=list(PRESETS))
    g.add_argument("--config", metavar="FILE", help="TOML file, or an image this tool wrote, to reproduce")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Preset, then config file, then explicit options: later ones win."""
    values = preset(args.preset).to_dict() if args.preset else Settings().to_dict()
    if args.config:
        values.update(load_config(args.config))
    for f in dataclasses.fields(Settings):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = value
    return from_mapping(values)


def read_files(args: argparse.Namespace, settings: Settings) -> tuple[str, ...]:
    """Every file a dreaming command reads: the input, the config, and the files the settings name."""
    return tuple(f for f in (getattr(args, "input", None), getattr(args, "config", None), *settings.files) if f)


@contextlib.contextmanager
def claimed_output(path: str, *, force: bool, inputs: tuple[str | Path | None, ...] = ()) -> Iterator[Path]:
    """The checked output path, locked for this run until the block ends (see deepdream.locks).

    Checked again once locked: a run that finished meanwhile has written it, and only --force overwrites.
    """
    output = imagefiles.check_output(path, force=force, inputs=inputs)
    with locks.hold(output):
        yield imagefiles.check_output(path, force=force, inputs=inputs)
