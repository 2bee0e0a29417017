"""Sub-command `live`: dream a camera, device or stream as it plays; record what is shown."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..video.flow import FLOWS
from ..video.live import FLOW, NEW_STEPS, STALL_SECONDS, STEPS, STRENGTH, LiveOptions, dream_live
from .args import add_dream_options, positive_float, positive_int, settings_from_args
from .video import positive_time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "live",
        help="dream a camera or stream in real time (newest frame first), optionally recording it",
        description="Dream a camera, a device or any file or URL FFmpeg reads as it plays. The dreamer takes the "
        "newest frame whenever it is free and drops the ones it cannot keep up with, so the delay stays one "
        "frame. The first frame gets a full dream; each next one starts from the previous dream carried along "
        "the optical flow and gets a few ascent steps. Stops on --duration, the source's end, q in the window "
        "or Ctrl-C; a recording is always finished.",
        conflict_handler="resolve",
    )
    p.add_argument("source", help="camera index (0), device path (/dev/video0), video file or stream URL")
    add_dream_options(p)  # first: --max-size below replaces the still's
    p.add_argument("-o", "--output", help="record what is shown (.mp4, .mov, .mkv)")
    p.add_argument("--force", action="store_true", help="overwrite an existing recording")
    p.add_argument("--duration", type=positive_time, help="seconds (or HH:MM:SS) to run (default: until stopped)")
    p.add_argument(
        "--max-size",
        dest="max_side",
        type=positive_int,
        help="cap on the frames' long side, e.g. 320 for a CPU (default: the source's size)",
    )
    p.add_argument(
        "--flow", choices=[f for f in FLOWS if f != "none"], default=FLOW, help=f"optical flow (default {FLOW})"
    )
    p.add_argument(
        "--steps", type=positive_int, default=STEPS, help=f"ascent steps per carried frame (default {STEPS})"
    )
    p.add_argument(
        "--strength",
        type=positive_float,
        default=STRENGTH,
        help=f"step size factor of those steps (default {STRENGTH})",
    )
    p.add_argument(
        "--new-steps",
        type=positive_int,
        default=NEW_STEPS,
        help="ascent steps for what the flow cannot carry, a new region or a cut, on the finest octave (default "
        f"{NEW_STEPS}; a full dream there would make the next frame later and a pan stall)",
    )
    p.add_argument(
        "--stall",
        type=positive_float,
        default=STALL_SECONDS,
        help=f"seconds without a frame that end a stream (default {STALL_SECONDS:g})",
    )
    p.add_argument("--no-window", action="store_true", help="show nothing, even where there is a display")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.set_defaults(run=run_live)


def run_live(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    options = LiveOptions(
        output=Path(args.output) if args.output else None,
        duration=args.duration,
        max_side=args.max_side,
        flow=args.flow,
        steps=args.steps,
        strength=args.strength,
        new_steps=args.new_steps,
        window=not args.no_window,
        stall=args.stall,
        force=args.force,
    )
    result = dream_live(args.source, settings, options)
    if not args.quiet:
        print(result.summary(), file=sys.stderr)
    return 0
