"""Sub-commands `video` (dream a clip, coherent along the optical flow) and `zoom` (feedback loop)."""

from __future__ import annotations

import argparse
import functools
import sys

from ..audio.music import music_zoom
from ..errors import SettingsError
from ..video import VideoResult, dream_video, dream_zoom
from ..video.flow import FLOWS
from ..video.reading import format_seconds, parse_time
from ..video.writing import OUTPUT_EXTENSIONS
from .args import add_dream_options, finite_float, positive_float, positive_int, settings_from_args, unit_float


def time_value(text: str) -> float:
    """'5', '2.5', '1:30', '00:00:02' -> seconds."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_time(text: str) -> float:
    value = time_value(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def pair(text: str) -> tuple[float, float]:
    """'DX,DY' -> (dx, dy) in pixels."""
    parts = text.split(",")
    try:
        dx, dy = (finite_float(p) for p in parts)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected DX,DY in pixels, e.g. 2,-1; got '{text}'") from None
    return dx, dy


def _job_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("frames and resuming")
    g.add_argument(
        "--work-dir", metavar="DIR", help="folder for the dreamed frames (default: OUTPUT.frames, removed when done)"
    )
    g.add_argument(
        "--resume", action="store_true", help="continue an interrupted run: frames already in the work folder are kept"
    )
    g.add_argument("--keep-frames", action="store_true", help="keep the default work folder after writing the output")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, help=f"output video ({', '.join(OUTPUT_EXTENSIONS)})")
    p.add_argument(
        "--force", action="store_true", help="overwrite an existing output; without --resume, discard old frames"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    add_dream_options(p)


class FlowBlendAlias(argparse.Action):
    """`video --blend`, the flow blend's old spelling, kept for one release with a one-line warning."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("deepdream: warning: video --blend is deprecated, use --flow-blend (the old spelling goes in the "
              "next release)", file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, values)


def register(sub: argparse._SubParsersAction) -> None:
    # conflict_handler="resolve": `--blend` here is the old spelling of --flow-blend (in `dream` it was the
    # octave blend), and --max-size gets the video default
    p = sub.add_parser(
        "video",
        help="dream a video frame by frame, coherent along the optical flow",
        description="Dream every frame of a video with one network load and one seed. The previous frame's "
        "dream is carried along the optical flow, so patterns follow the motion instead of boiling: only "
        "what the flow cannot carry (new, uncovered pixels) is dreamed afresh. fps, size and audio are kept.",
        conflict_handler="resolve",
    )
    p.add_argument("input", help="input video (anything FFmpeg reads)")
    _common(p)
    g = p.add_argument_group("video")
    g.add_argument(
        "--flow", choices=list(FLOWS), default="dis", help="optical flow for coherence; none: plain (default dis)"
    )
    g.add_argument(
        "--evolve",
        action="store_true",
        help="let the patterns keep changing: re-dream every frame from its input blended with the previous "
        "dream (default: the dream holds still where the scene does and moves with it)",
    )
    g.add_argument(
        "--full-dreams",
        action="store_true",
        help="dream every frame in full, as before warm starts (slower, the same steady look; default: a frame "
        "the flow carries gets a few steps on top of the carried dream, and only new pixels a full dream)",
    )
    g.add_argument(
        "--flow-blend",
        type=unit_float,
        help="share of the previous frame's warped dream each frame carries (default 1, or 0.8 with --evolve)",
    )
    g.add_argument("--blend", dest="flow_blend", type=unit_float, action=FlowBlendAlias, help=argparse.SUPPRESS)
    g.add_argument(
        "--octave-blend",
        dest="octave_blend",
        type=unit_float,
        help="dreamed smaller octave weight (--octave-mode blend)",
    )
    g.add_argument("--start", type=time_value, default=0.0, help="start time, seconds or HH:MM:SS (default 0)")
    g.add_argument("--duration", type=positive_time, help="seconds (or HH:MM:SS) to dream (default: to the end)")
    g.add_argument("--max-size", type=positive_int, help="cap on the frames' long side (default: keep the input size)")
    _job_options(p)
    p.set_defaults(run=run_video)

    p = sub.add_parser(
        "zoom",
        help="zoom/rotate feedback loop from an image or noise (MP4 or GIF)",
        description="Dream an image, zoom (rotate, shift) into the dream, dream again, and so on: an endless zoom.",
    )
    p.add_argument("input", nargs="?", help="start image (omit with --init noise)")
    _common(p)
    g = p.add_argument_group("zoom")
    g.add_argument(
        "--frames", type=positive_int, help="frames to make, the first included (default 60; with --audio, the song's)"
    )
    g.add_argument("--zoom", type=positive_float, default=1.04, help="scale per frame; > 1 zooms in (default 1.04)")
    g.add_argument(
        "--audio",
        metavar="SONG",
        help="zoom speed and dream strength follow the song's loudness and "
        "onsets; the song is muxed in and the video ends with it",
    )
    g.add_argument("--rotate", type=finite_float, default=0.0, help="degrees per frame, counter-clockwise (default 0)")
    g.add_argument("--translate", type=pair, default=(0.0, 0.0), metavar="DX,DY", help="pixels per frame (default 0,0)")
    g.add_argument("--fps", type=positive_float, default=24.0, help="frames per second of the output (default 24)")
    _job_options(p)
    p.set_defaults(run=run_zoom)


def _report(result: VideoResult, quiet: bool) -> None:
    if quiet:
        return
    w, h = result.size
    reused = result.frames - result.dreamed
    timing = f"dreamed {result.dreamed} frames in {format_seconds(result.seconds)}"
    if result.dreamed:
        timing += f" ({result.seconds / result.dreamed:.2f} s/frame, {result.steps_per_frame:.0f} ascent steps/frame)"
    if reused:
        timing += f", {reused} reused from the work folder"
    what = f"{result.frames} frames, {float(result.fps):.3g} fps, {w}x{h}, {result.audio}"
    print(f"wrote {result.path}: {what}; {timing}", file=sys.stderr)
    if result.work_dir is not None:
        print(f"frames kept in {result.work_dir}", file=sys.stderr)


def run_video(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    result = dream_video(
        args.input,
        args.output,
        settings,
        flow=args.flow,
        flow_blend=args.flow_blend,
        evolve=args.evolve,
        warm_start=not args.full_dreams,
        start=args.start,
        duration=args.duration,
        max_side=args.max_size,
        work_dir=args.work_dir,
        resume=args.resume,
        force=args.force,
        keep_frames=args.keep_frames,
        progress=not args.quiet,
    )
    _report(result, args.quiet)
    return 0


def run_zoom(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.input is None and settings.init != "noise":
        raise SettingsError("give a start image, or --init noise")
    if args.audio is not None and args.frames is not None:
        raise SettingsError("--audio sets the number of frames from the song; leave out --frames")
    if args.audio is not None:
        make_zoom = functools.partial(music_zoom, song=args.audio)
    else:
        make_zoom = functools.partial(dream_zoom, frames=args.frames or 60)
    result = make_zoom(
        args.input if settings.init == "image" else None,
        args.output,
        settings,
        zoom=args.zoom,
        rotate=args.rotate,
        translate=args.translate,
        fps=args.fps,
        work_dir=args.work_dir,
        resume=args.resume,
        force=args.force,
        keep_frames=args.keep_frames,
        progress=not args.quiet,
    )
    _report(result, args.quiet)
    return 0
