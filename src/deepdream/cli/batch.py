"""Sub-command `batch`: dream files, folders and globs into a mirrored output tree, resumably, on local
worker processes or a Ray cluster."""

from __future__ import annotations

import argparse
import sys

from ..batch import BatchJob, BatchSummary, LocalExecutor, RayExecutor, VideoOptions, run_batch
from ..batch.plan import MAX_THREADS
from ..imagefiles import FORMATS
from ..video.flow import FLOWS
from ..video.writing import OUTPUT_EXTENSIONS
from .args import add_dream_options, int_in, positive_int, settings_from_args, unit_float
from .video import positive_time, time_value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="dream many images and videos (folders, globs) with resume, local workers or Ray",
        description="Dream every image and video of the inputs into OUTDIR, mirroring the input tree. A manifest "
        "in OUTDIR records each item: re-running the command skips finished items and redoes interrupted ones. "
        "Each file's seed comes from the base seed and its relative path, so outputs do not depend on the order "
        "or the number of workers.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders (recursive), globs")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (created if missing)")
    p.add_argument(
        "--format",
        choices=sorted(e.lstrip(".") for e in FORMATS),
        help="image output format (default: the input's, PNG for formats that cannot be written)",
    )
    p.add_argument("--force", action="store_true", help="redo every item, finished or not")
    p.add_argument("--retry-failed", action="store_true", help="try again items that failed with the same input")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("workers")
    g.add_argument(
        "--workers",
        type=int_in(1, MAX_THREADS),
        help="local worker processes (default 1; one per GPU on a multi-GPU box), or Ray actors with --ray "
        "(default: one per GPU, else one per --cpus-per-worker CPUs)",
    )
    g.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on a Ray cluster (ADDRESS, or 'auto'); without ADDRESS start a local one on 127.0.0.1",
    )
    g.add_argument(
        "--threads",
        type=int_in(1, MAX_THREADS),
        default=1,
        help="CPU threads each item is dreamed with, on every worker and engine, so the pixels do not "
        "depend on --workers or --ray (default 1; for throughput use --workers = cores / threads)",
    )
    g.add_argument(
        "--cpus-per-worker", type=int_in(1, MAX_THREADS), help="CPUs each Ray actor reserves (default: --threads)"
    )
    g = p.add_argument_group("videos")
    g.add_argument("--flow", choices=list(FLOWS), default="dis", help="optical flow for coherence (default dis)")
    g.add_argument("--evolve", action="store_true", help="patterns keep changing, slowly (see 'deepdream video')")
    g.add_argument(
        "--flow-blend",
        type=unit_float,
        help="share of the previous frame's warped dream each frame carries (default 1, or 0.8 with --evolve)",
    )
    g.add_argument("--start", type=time_value, default=0.0, help="start time, seconds or HH:MM:SS (default 0)")
    g.add_argument("--duration", type=positive_time, help="seconds (or HH:MM:SS) to dream (default: to the end)")
    g.add_argument(
        "--video-format",
        choices=sorted(e.lstrip(".") for e in OUTPUT_EXTENSIONS),
        help="video output format (default: the input's container, MP4 for others)",
    )
    g.add_argument("--video-max-size", type=positive_int, help="cap on the frames' long side (default: keep)")
    g.add_argument(
        "--segments",
        type=int_in(1, MAX_THREADS),
        default=1,
        help="split each video into N overlapping segments dreamed in parallel (default 1)",
    )
    g.add_argument(
        "--overlap",
        type=positive_int,
        default=8,
        help="frames shared by neighbouring segments, cross-faded (default 8)",
    )
    add_dream_options(p)
    p.set_defaults(run=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    video_format = f".{args.video_format}" if args.video_format else None
    video = VideoOptions(flow=args.flow, flow_blend=args.flow_blend, evolve=args.evolve, start=args.start,
                         duration=args.duration, max_side=args.video_max_size, segments=args.segments,
                         overlap=args.overlap, format=video_format)  # fmt: skip
    job = BatchJob(settings_from_args(args), video, f".{args.format}" if args.format else None, args.threads)
    if args.ray is not None:
        executor = RayExecutor(address=args.ray or None, workers=args.workers, cpus_per_worker=args.cpus_per_worker)
    else:
        executor = LocalExecutor(workers=args.workers)
    summary = run_batch(args.inputs, args.output, job, executor=executor, force=args.force,
                        retry_failed=args.retry_failed, progress=not args.quiet)  # fmt: skip
    _report(summary, executor.describe())
    return 0 if summary.ok else 1


def _report(summary: BatchSummary, where: str) -> None:
    """The summary line, then one line per failed item (always printed: failures need to be seen)."""
    print(f"batch: {summary.done} done, {summary.skipped} skipped, {summary.failed} failed in {summary.seconds:.1f} s "
          f"({where}); manifest {summary.manifest}", file=sys.stderr)  # fmt: skip
    for relpath, error in summary.errors.items():
        print(f"  failed {relpath}: {error}", file=sys.stderr)
    if summary.errors and summary.log is not None:
        print(f"  details in {summary.log}", file=sys.stderr)
