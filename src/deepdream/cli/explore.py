"""Sub-commands `sweep` (one dream per layer) and `atlas` (one feature visualisation per channel)."""

from __future__ import annotations

import argparse
import sys

from .. import imagefiles
from ..engine.objectives import parse_layer_spec
from ..explore import channel_atlas, layer_sweep, sweep_layers
from ..models.load import backbone_from_settings
from ..settings import FOURIER_STEPS, PRECISION_CHOICES
from .args import (
    add_dream_options,
    add_model_options,
    claimed_output,
    int_list,
    positive_float,
    positive_int,
    read_files,
    seed,
    settings_from_args,
)

SWEEP_MAX_SIZE = 512  # a sheet holds several dreams: smaller tiles than a single dream's 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="dream one photo at several layers, side by side",
        description="Dream one photo at each layer and lay the results out as a labelled sheet. "
        "--layers gives the layers (comma-separated names or indices); without it the network's "
        f"recommended layers are used, in forward order. --max-size defaults to {SWEEP_MAX_SIZE} here.",
    )
    p.add_argument("input", help="photo to dream")
    p.add_argument("-o", "--output", required=True, help="output sheet; format from the extension")
    p.add_argument("--every", type=positive_int, default=1, help="keep every N-th layer of the list")
    p.add_argument("--columns", type=positive_int, help="tiles per row (default: up to 4 in one row, else a square)")
    p.add_argument("--with-input", action="store_true", help="put the undreamed photo first")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_dream_options(p)
    p.set_defaults(run=run_sweep)

    p = sub.add_parser(
        "atlas",
        help="visualise channels of a layer, one tile each",
        description="Render each channel of a layer from noise (Fourier-space image, decorrelated colour, "
        "random transforms) and lay them out as a labelled sheet.",
    )
    p.add_argument("-o", "--output", required=True, help="output sheet; format from the extension")
    p.add_argument("--layer", dest="layers", help="layer name or index (default: the network's first recommended)")
    p.add_argument(
        "--channels", type=int_list, default=tuple(range(16)), help="channels, e.g. 0-35 or 1,4,9 (default 0-15)"
    )
    p.add_argument("--tile", type=positive_int, default=128, help="tile side in pixels (default 128)")
    p.add_argument(
        "--steps", dest="iterations", type=positive_int, help=f"optimisation steps per tile (default {FOURIER_STEPS})"
    )
    p.add_argument("--lr", type=positive_float, default=0.05, help="Adam learning rate on the spectrum (default 0.05)")
    p.add_argument("--columns", type=positive_int, help="tiles per row (default: a near-square grid)")
    p.add_argument("--seed", type=seed)
    p.add_argument("--precision", choices=PRECISION_CHOICES)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_model_options(p)
    p.set_defaults(run=run_atlas, preset=None, config=None)


def run_sweep(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.max_size is None and args.config is None:
        settings = settings.replace(max_size=SWEEP_MAX_SIZE)
    photo = imagefiles.open_image(args.input)  # fail on a bad input before loading any network
    if settings.guide:
        imagefiles.open_image(settings.guide)
    with claimed_output(args.output, force=args.force, inputs=read_files(args, settings)) as output:
        specs = [name for name, _ in parse_layer_spec(settings.layers)] if settings.layers else None
        backbone = backbone_from_settings(settings)  # the one network load for the whole sheet
        layers = sweep_layers(backbone, specs, args.every)
        sheet = layer_sweep(
            photo,
            backbone,
            settings,
            layers,
            columns=args.columns,
            with_input=args.with_input,
            progress=not args.quiet,
        )
        imagefiles.save_image(sheet, output, metadata=sheet.info["deepdream"])
    if not args.quiet:
        print(f"wrote {output} ({len(layers)} layers: {', '.join(layers)})", file=sys.stderr)
    return 0


def run_atlas(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with claimed_output(args.output, force=args.force, inputs=settings.files) as output:
        backbone = backbone_from_settings(settings)
        layer = settings.layers or (backbone.recommended_layers or tuple(backbone.layer_names()[-1:]))[0]
        sheet = channel_atlas(
            backbone,
            layer,
            args.channels,
            settings,
            args.tile,
            columns=args.columns,
            lr=args.lr,
            progress=not args.quiet,
        )
        imagefiles.save_image(sheet, output, metadata=sheet.info["deepdream"])
    if not args.quiet:
        print(f"wrote {output} ({len(args.channels)} channels of {layer})", file=sys.stderr)
    return 0
