"""Does the dream boil, and what does a frame cost? Warp error, frame difference, dream strength, speed.

Makes three clips (H.264, 10 fps): a slow pan across a photo, a static camera on the photo with
camera noise, and a disc moving over the still, noisy photo. Dreams each with default settings and
seed 0: the steady default (warm-started: a carried frame gets a few ascent steps on top of the carried
dream), the steady look dreamed in full on every frame (--full-dreams, the code before warm starts),
--flow farneback / none, and --evolve; and prints, read back from the encoded outputs:

  warp error  mean |out[t] - out[t-1] warped along the source's flow| (0..255) over pixels that pass
              the forward-backward check (Ruder et al. 2016): boiling, whatever the motion
  frame diff  mean |out[t] - out[t-1]|: what a viewer sees change, motion included
  gain        mean squared activation at the dream layer, output over source frame: mean and minimum
              over the frames (a still image's dream is the reference)
  steps       ascent steps per frame (all octaves), as counted by the dreamer
  s/frame     wall time of the whole pipeline per frame (flow, dream, compositing); cpu s/frame beside it
  x full      s/frame against --full-dreams on the same clip, in the same run

    python benchmarks/flicker.py --threads 1                       # the table in docs/video.md
    python benchmarks/flicker.py --threads 1 --modes warm,full     # the warm start against the full dreams
    python benchmarks/flicker.py --size 160x120 --frames 6         # a quick look
    python benchmarks/flicker.py --threads 1 --skip-table          # only the timings
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from PIL import Image

from deepdream import imagefiles
from deepdream.engine.taps import Taps
from deepdream.models.load import load_backbone
from deepdream.settings import Settings
from deepdream.video import dream_video
from deepdream.video.coherence import FlowCoherence, SteadyCoherence
from deepdream.video.flow import flicker, warp_error
from deepdream.video.jobs import FrameDreamer
from deepdream.video.reading import read_frames

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/cats-vs-dogs/test/cats"
FPS = 10


def photo(width: int, height: int) -> tuple[np.ndarray, str]:
    """A photo cropped to the frame, or a synthetic gradient with blobs when no photo is around."""
    photos = sorted(PHOTOS.glob("*.jpg"))[:1] if PHOTOS.is_dir() else []
    if photos:
        img = Image.open(photos[0]).convert("RGB")
        s = max(width / img.width, height / img.height)
        img = img.resize((math.ceil(img.width * s), math.ceil(img.height * s)), Image.Resampling.LANCZOS)
        left, top = (img.width - width) // 2, (img.height - height) // 2
        return np.asarray(img.crop((left, top, left + width, top + height))).copy(), photos[0].name
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([xx / width, yy / height, 0.5 + 0.3 * np.sin(xx / 17) * np.cos(yy / 13)], -1)
    return (rgb * 255).astype(np.uint8), "synthetic"


def pan(width: int, height: int, frames: int) -> list[np.ndarray]:
    """The camera slides right 2 px per frame across a still photo (whole pixels: the source warps exactly)."""
    wide, _ = photo(width + 2 * frames, height)
    return [wide[:, 2 * i : 2 * i + width] for i in range(frames)]


def static(width: int, height: int, frames: int) -> list[np.ndarray]:
    """A tripod shot of a still photo: only the camera's noise (sigma 2 levels) changes."""
    still, _ = photo(width, height)
    rng = np.random.default_rng(0)
    return [np.clip(still + rng.normal(0, 2, still.shape), 0, 255).astype(np.uint8) for _ in range(frames)]


def moving(width: int, height: int, frames: int) -> list[np.ndarray]:
    """A disc crossing the static, noisy shot 2 px per frame."""
    out = []
    for i, frame in enumerate(static(width, height, frames)):
        centre = (int(width * 0.25) + 2 * i, int(height * 0.6))
        out.append(cv2.circle(frame.copy(), centre, int(height * 0.15), (250, 200, 40), -1, cv2.LINE_AA))
    return out


CLIPS = {"slow pan": pan, "static camera": static, "moving object": moving}


def write_clip(path: Path, frames: list[np.ndarray], fps: int = FPS) -> None:
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps, options={"crf": "18"})
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt = "yuv420p"
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))


def gains(outputs: list[np.ndarray], sources: list[np.ndarray], dreamer: FrameDreamer) -> list[float]:
    """Per frame: mean squared activation at the dream layer(s), output over source."""
    backbone = dreamer.backbone
    with Taps(backbone.model, dreamer.objective.layers) as taps, torch.no_grad():

        def energy(array: np.ndarray) -> float:
            acts = taps(backbone.normalize(imagefiles.from_uint8(array)))
            return float(sum(a.float().pow(2).mean() for a in acts.values()))

        return [energy(o) / energy(s) for o, s in zip(outputs, sources)]


def row(label: str, outputs, sources, dreamer, timing: str = "") -> str:
    g = gains(outputs, sources, dreamer)
    return (f"| {label:<28}|{warp_error(outputs, sources):>8.2f} |{flicker(outputs):>8.2f} |"
            f"{np.mean(g):>6.2f} |{min(g):>6.2f} |{timing}")  # fmt: skip


# name -> (label, dream_video arguments)
MODES = {
    "warm": ("steady (default, warm)", dict(flow="dis")),
    "full": ("steady --full-dreams", dict(flow="dis", warm_start=False)),
    "farneback": ("--flow farneback", dict(flow="farneback")),
    "none": ("--flow none", dict(flow="none")),
    "evolve": ("--evolve", dict(flow="dis", evolve=True)),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="320x240", help="clip size (default 320x240, as in issue 13)")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--clips", default=",".join(CLIPS), help=f"comma-separated subset of: {', '.join(CLIPS)}")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of: {', '.join(MODES)}")
    p.add_argument("--speed-frames", type=int, default=7, help="pan frames timed in turns, steady vs --evolve")
    p.add_argument("--skip-table", action="store_true", help="only the timings")
    p.add_argument("--skip-speed", action="store_true", help="only the table")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    settings = Settings(seed=0)  # the defaults: efficientnet_lite0 blocks.4, 10 iterations x 4 octaves
    backbone = load_backbone("efficientnet_lite0", pretrained=True)
    print(f"torch threads {torch.get_num_threads()}; {width}x{height}, {args.frames} frames at {FPS} fps; "
          f"photo {photo(8, 8)[1]}; default settings, seed 0")  # fmt: skip
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory() as tmp, FrameDreamer(settings, backbone) as dreamer:
        tmp = Path(tmp)
        for name in [] if args.skip_table else args.clips.split(","):
            clip = tmp / "clip.mp4"
            write_clip(clip, CLIPS[name](width, height, args.frames))
            sources = list(read_frames(clip))
            print(f"\n{name}\n| {'mode':<28}| warp err | frame diff | gain | min gain | steps | s/frame | cpu s "
                  "| x full | cpu x full |")  # fmt: skip
            print(row("source", sources, sources, dreamer))
            per_frame: dict[str, float] = {}
            cpu_per_frame: dict[str, float] = {}
            for mode in modes:
                label, kwargs = MODES[mode]
                out = tmp / f"{mode}.mp4"
                cpu = time.process_time()
                r = dream_video(clip, out, settings, backbone=backbone, force=True, **kwargs)
                cpu = (time.process_time() - cpu) / r.dreamed
                per_frame[mode], cpu_per_frame[mode] = r.seconds / r.dreamed, cpu
                ratio = per_frame[mode] / per_frame["full"] if "full" in per_frame else float("nan")
                cpu_ratio = cpu / cpu_per_frame["full"] if "full" in cpu_per_frame else float("nan")
                timing = (f"{r.steps_per_frame:>6.1f} |{per_frame[mode]:>8.2f} |{cpu:>6.2f} |{ratio:>7.2f} |"
                          f"{cpu_ratio:>11.2f} |")  # fmt: skip
                print(row(label, list(read_frames(out)), sources, dreamer, timing), flush=True)
        if not args.skip_speed:
            print()
            speed(pan(width, height, args.speed_frames), dreamer)
            flow_timing(width, height)


def speed(sources: list[np.ndarray], dreamer: FrameDreamer, flow: str = "dis") -> None:
    """Steady against evolving, frame by frame in turns (the shared CPU's load hits both alike)."""
    modes = {
        "steady (default)": SteadyCoherence(flow),
        "steady --full-dreams": SteadyCoherence(flow, warm=False),
        "--evolve": FlowCoherence(flow),
    }
    first = dreamer.dream(sources[0])
    prev = dict.fromkeys(modes, first)
    times: dict[str, list[float]] = {name: [] for name in modes}
    for t in range(1, len(sources)):
        for name in sorted(modes, reverse=t % 2 == 0):
            began = time.perf_counter()
            prev[name] = modes[name].dream_frame(dreamer, sources[t], sources[t - 1], prev[name])
            times[name].append(time.perf_counter() - began)
    steady, full, evolve = (float(np.median(times[name])) for name in modes)
    print(
        f"--flow {flow}, in turns over {len(sources) - 1} frames: steady {steady:.2f} s/frame, --full-dreams "
        f"{full:.2f}, --evolve {evolve:.2f} (median; steady / full = {steady / full:.2f})"
    )


class Unchanged:
    """A stand-in dreamer that returns its image: what the coherence costs without the network."""

    min_size = 32

    def full_steps(self, height, width):
        return 96

    def dream(self, image, strength=1.0, *, steps=None, octaves=None, region=None):
        if region is not None:
            image = image[region[0] : region[1], region[2] : region[3]]
        return np.asarray(image * 255 if image.dtype != np.uint8 else image, np.uint8)


def flow_timing(width: int, height: int) -> None:
    """What the coherence itself costs per frame, next to the dream."""
    frames = static(width, height, 2)
    for flow in ("dis", "farneback"):
        for kind in (SteadyCoherence, FlowCoherence):
            coherence = kind(flow)
            t = time.perf_counter()
            for _ in range(5):
                coherence.dream_frame(Unchanged(), frames[1], frames[0], frames[0])
            ms = (time.perf_counter() - t) / 5 * 1000
            print(f"{width}x{height} flow + warp + compositing, {kind.__name__} --flow {flow}: {ms:.0f} ms/frame")


if __name__ == "__main__":
    main()
