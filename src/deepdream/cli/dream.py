"""Sub-commands `dream`, `layers` and `models`."""

from __future__ import annotations

import argparse
import sys

from .. import imagefiles
from ..engine.taps import layer_shapes
from ..errors import SettingsError
from ..models.backbone import Backbone
from ..models.load import load_backbone
from ..models.registry import FAMILIES, describe_backbone, is_backbone_name, list_backbones
from ..runtime import resolve_device
from ..still import dream
from .args import add_dream_options, add_model_options, claimed_output, read_files, settings_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dream", help="dream an image (or noise)", description="Dream an image or noise.")
    p.add_argument("input", nargs="?", help="image to dream (omit with --init noise)")
    p.add_argument("-o", "--output", required=True, help="output image; format from the extension")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--plot",
        metavar="IMAGE",
        help="--init maco: also write where the picture matters (gradient sizes summed over the steps)",
    )
    add_dream_options(p)
    p.set_defaults(run=run_dream)

    p = sub.add_parser(
        "layers", help="list a network's layers", description="List dotted layer names.", conflict_handler="resolve"
    )
    add_model_options(p)
    # also language models (`deepdream text`): registered, a Hugging Face id, or config:FOLDER
    p.add_argument(
        "--model",
        help=f"backbone ({', '.join(list_backbones())}, timm:NAME, torchvision:NAME) "
        "or language model (smollm2-135m, a Hugging Face id, config:FOLDER)",
    )
    p.set_defaults(run=run_layers)

    p = sub.add_parser("models", help="list registered backbones and language models")
    p.set_defaults(run=run_models)


def run_dream(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.input is None and settings.init == "image":
        raise SettingsError("give an input image, or --init noise")
    if args.input is not None:
        imagefiles.open_image(args.input)  # fail on a bad input before loading any network
    if settings.guide:
        imagefiles.open_image(settings.guide)
    if args.plot is not None and settings.init != "maco":
        raise SettingsError("--plot shows where a --init maco picture matters: it needs --init maco")
    with claimed_output(args.output, force=args.force, inputs=read_files(args, settings)) as output:
        inputs = (*read_files(args, settings), output)
        plot = args.plot and imagefiles.check_output(args.plot, force=args.force, inputs=inputs)
        result = dream(args.input if settings.init == "image" else None, settings=settings, progress=not args.quiet)
        imagefiles.save_image(result, output, metadata=result.info["deepdream"])
        if plot:
            imagefiles.save_image(result.info["importance"], plot)
    if not args.quiet:
        print(f"wrote {output}", file=sys.stderr)
    return 0


def _backbone(args: argparse.Namespace) -> Backbone:
    return load_backbone(
        args.model or "efficientnet_lite0",
        weights=args.weights,
        checkpoint=args.checkpoint,
        device=resolve_device(args.device or "auto"),
    )


def run_layers(args: argparse.Namespace) -> int:
    if args.model is not None and not is_backbone_name(args.model):
        return run_text_layers(args)
    backbone = _backbone(args)
    names = backbone.layer_names()
    modules = dict(backbone.model.named_modules())
    size = backbone.fixed_size[0] if backbone.fixed_size else max(224, backbone.min_size)
    shapes = layer_shapes(backbone.model, [*backbone.recommended_layers, *names], size, backbone.device)
    print(f"# {backbone.name}: recommended taps, then every layer by index (output C x H x W at {size}x{size})")
    for name in backbone.recommended_layers:
        shape = "x".join(map(str, shapes[name])) if name in shapes else "-"
        index = str(names.index(name)) if name in names else "-"
        print(f"{index:>4} * {name:<32} {shape:<14} {type(modules[name]).__name__}")
    for i, name in enumerate(names):
        shape = "x".join(map(str, shapes[name])) if name in shapes else "-"
        mark = "*" if name in backbone.recommended_layers else " "
        print(f"{i:4d} {mark} {name:<32} {shape:<14} {type(modules[name]).__name__}")
    return 0


def run_text_layers(args: argparse.Namespace) -> int:
    """A language model's taps: MLP neurons (what --neuron indexes) and block outputs, with their widths."""
    from ..text.registry import load_language_model
    from ..text.taps import find_taps, tap_widths

    lm = load_language_model(args.model, resolve_device(args.device or "cpu"))
    widths = tap_widths(lm.model, lm.device)
    print(f"# {lm.name}: taps for 'deepdream text --layer' (mlp: neurons; block: output, for energy/--direction)")
    for i, (name, tap) in enumerate(find_taps(lm.model).items()):
        print(f"{i:4d}   {name:<32} {tap.kind:<6} {widths[name]:>6}")
    return 0


def run_models(args: argparse.Namespace) -> int:
    for name in list_backbones():
        print(f"{name:<20} {describe_backbone(name)}")
    for family in FAMILIES:
        print(f"{family + ':NAME':<20} {describe_backbone(family)}")
    from ..text.registry import describe_language_model, list_language_models

    for name in list_language_models():
        print(f"{name:<20} language model: {describe_language_model(name)}")
    return 0
