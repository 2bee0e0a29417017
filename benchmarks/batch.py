"""Batch throughput: images per minute for 1 and 2 local workers and for Ray with 2 actors, on the same
photos in one process run, with the scaling efficiency; then the flicker at the seams of a video dreamed
in segments, against the flicker inside the segments.

    python benchmarks/batch.py                      # 32 photos, long side 160, 2 octaves x 5 steps
    python benchmarks/batch.py --n 8 --skip-ray     # quicker
    python benchmarks/batch.py --skip-throughput    # segment seams only

Photos are the cats-vs-dogs test photos (../shared/data) resized small, or generated ones when that
folder is absent. Two rates per run: *wall* counts everything the command does (process or cluster
start, network loads); *steady* is items per minute between the first and the last finished item (from
the manifest's timestamps), the rate a long batch approaches.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from deepdream.batch import BatchJob, LocalExecutor, Manifest, RayExecutor, VideoOptions, run_batch
from deepdream.batch.segments import seam_jumps, split
from deepdream.settings import Settings
from deepdream.video.reading import read_frames

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cats-vs-dogs" / "test"


def photos(folder: Path, n: int, size: int) -> str:
    """n photos in `folder` with the long side `size`: real ones when available, else generated."""
    found = sorted(PHOTOS.glob("*/*.jpg")) if PHOTOS.is_dir() else []
    picked = [found[i * len(found) // n] for i in range(n)] if len(found) >= n else []
    rng = np.random.default_rng(0)
    for i in range(n):
        if picked:
            img = Image.open(picked[i]).convert("RGB")
        else:
            yy, xx = np.mgrid[0:96, 0:128] / 128
            rgb = np.stack([np.sin(rng.uniform(3, 9) * xx), np.cos(rng.uniform(3, 9) * yy), xx * yy], -1)
            img = Image.fromarray((127 + 120 * rgb).astype(np.uint8))
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        img.save(folder / f"photo_{i:03d}.png")
    return f"{n} cats-vs-dogs test photos" if picked else f"{n} generated photos"


def rates(out: Path, n: int, wall: float) -> tuple[float, float]:
    """(wall, steady) items per minute."""
    with Manifest(out / "manifest.sqlite") as manifest:
        finished = sorted(r.updated for r in manifest.records() if r.status == "done")
    assert len(finished) == n, f"{len(finished)} of {n} done"
    steady = (n - 1) / (finished[-1] - finished[0]) * 60 if n > 1 else float("nan")
    return n / wall * 60, steady


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (pool workers once the pool
    closes; a Ray cluster's processes once it stops)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def same_pixels(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    return bool(files) and all(np.array_equal(np.asarray(Image.open(a / f)), np.asarray(Image.open(b / f)))
                               for f in files)  # fmt: skip


def throughput(args, settings: Settings, root: Path) -> None:
    inputs = root / "photos"
    inputs.mkdir()
    what = photos(inputs, args.n, args.size)
    cores = os.cpu_count() or 1
    # (name, executor, workers, the job's threads per item); the first run is the per-worker baseline and the
    # reference pixels: every run with 1 thread per item must match it, whatever its workers or engine
    runs = [("local, 1 worker, 1 thread", LocalExecutor(1), 1, 1),
            (f"local, 1 worker, {cores} threads", LocalExecutor(1), 1, cores),
            ("local, 2 workers (1 thread each)", LocalExecutor(2), 2, 1)]  # fmt: skip
    if not args.skip_ray:
        runs.append(("Ray, 2 actors (local cluster, 1 CPU each)", RayExecutor(workers=2, num_cpus=2), 2, 1))
    print(f"# {what}, long side {args.size}, {settings.octaves} octaves x {settings.iterations} steps, "
          f"{cores} CPUs; efficiency = rate / (workers x the 1-thread rate)")  # fmt: skip
    print(f"rounds: {args.rounds}, interleaved; each figure is the best round (other jobs share this machine)")
    print("| run | wall s | CPU s | images/min (wall) | images/min (steady) | efficiency (steady) | pixels = run 1 |")
    print("|---|---|---|---|---|---|---|")
    best: dict[str, tuple[float, float, float, float]] = {}
    same: dict[str, bool] = {}
    for r in range(args.rounds):
        for i, (name, executor, workers, threads) in enumerate(runs):
            out = root / f"out{r}-{i}"
            began, cpu = time.perf_counter(), cpu_seconds()
            summary = run_batch([inputs], out, BatchJob(settings, threads=threads), executor=executor)
            wall, cpu = time.perf_counter() - began, cpu_seconds() - cpu
            assert summary.ok and summary.done == args.n, summary.errors
            per_wall, per_steady = rates(out, args.n, wall)
            same[name] = same.get(name, True) and same_pixels(root / f"out{r}-0", out)
            if name not in best or per_steady > best[name][3]:
                best[name] = (wall, cpu, per_wall, per_steady)
    base = best[runs[0][0]][3]
    for name, _, workers, _ in runs:
        wall, cpu, per_wall, per_steady = best[name]
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {per_wall:.1f} | {per_steady:.1f} | "
              f"{per_steady / (workers * base):.0%} | {'yes' if same[name] else 'no'} |")  # fmt: skip


def make_clip(path: Path, frames: int, width: int, height: int, fps: int = 24) -> None:
    """A photo-like background with a square drifting right: motion the flow can follow."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = np.stack([xx / width, yy / height, 0.5 + 0.3 * np.sin(xx / 9) * np.cos(yy / 7)], -1) * 255
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "16"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            img = bg.astype(np.uint8)
            x = 8 + 2 * i
            img[height // 3 : height // 3 + 24, x : x + 24] = (240, 210, 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def seams(args, settings: Settings, root: Path) -> None:
    clip = root / "clip.mp4"
    make_clip(clip, args.frames, 128, 96)
    torch.set_num_threads(1)  # the one-segment run dreams in this process: one thread, as each worker has
    print(f"\n# segments: {args.frames} frames 128x96, {args.segments} segments, flow dis, 2 local workers; "
          "jump = mean |frame t+1 - frame t| (0..255) of the decoded output")  # fmt: skip
    print("| run | jump inside segments | mean jump at seams | largest jump at seams | largest / inside |")
    print("|---|---|---|---|---|")
    crossfade = f"segments, cross-fade over {args.overlap} frames"
    # (name, segments, overlap); the one-segment run is read at the cross-fade run's seam positions
    for name, segments, overlap in [("one segment (reference)", 1, args.overlap),
                                    ("segments, hard cut (overlap 0)", args.segments, 0),
                                    (crossfade, args.segments, args.overlap)]:  # fmt: skip
        out = root / f"seg{segments}-{overlap}"
        job = BatchJob(settings, VideoOptions(segments=segments, overlap=overlap))
        summary = run_batch([clip], out, job, executor=LocalExecutor(2 if segments > 1 else 1))
        assert summary.ok, summary.errors
        frames = list(read_frames(out / "clip.mp4"))
        at, inside = seam_jumps(frames, split(len(frames), args.segments, overlap, 24))
        print(f"| {name} | {np.mean(inside):.2f} | {np.mean(at):.2f} | {np.max(at):.2f} | "
              f"{np.max(at) / np.mean(inside):.2f}x |", flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="photos (default 32)")
    parser.add_argument("--size", type=int, default=160, help="long side of the photos (default 160)")
    parser.add_argument("--octaves", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--frames", type=int, default=48, help="frames of the segment clip (default 48)")
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--overlap", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is kept (default 2)")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-seams", action="store_true")
    args = parser.parse_args()
    settings = Settings(octaves=args.octaves, iterations=args.iterations, seed=0)
    with tempfile.TemporaryDirectory(prefix="deepdream-bench-") as folder:
        if not args.skip_throughput:
            throughput(args, settings, Path(folder))
        if not args.skip_seams:
            seams(args, settings, Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
