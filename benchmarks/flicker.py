"""Flicker of dreamed video with optical-flow coherence vs plain per-frame dreaming, and seconds per frame.

Makes a static-camera clip (a still photo, or a synthetic background, with slowly moving shapes and
text, plus a sine audio track), dreams it with --flow dis / farneback / none under the same settings and
seed, and prints flicker = mean absolute difference between consecutive output frames (0..255), read
back from the encoded outputs. Then times the default settings at 640x360.

    python benchmarks/flicker.py                    # everything (~15 min on 2 shared cores)
    python benchmarks/flicker.py --skip-speed       # flicker only
    python benchmarks/flicker.py --threads 1        # torch threads; 1 is faster on a loaded shared CPU
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from PIL import Image

from deepdream.models.load import load_backbone
from deepdream import video
from deepdream.settings import Settings
from deepdream.video import FlowCoherence, FrameDreamer, dream_video, flicker, read_frames

PHOTOS = Path("/work/shared/data/cats-vs-dogs/test/cats")


def background(width: int, height: int) -> tuple[np.ndarray, str]:
    """A still photo cropped to the frame, or a synthetic gradient with blobs when no photo is around."""
    photos = sorted(PHOTOS.glob("*.jpg"))[:1] if PHOTOS.is_dir() else []
    if photos:
        img = Image.open(photos[0]).convert("RGB")
        s = max(width / img.width, height / img.height)
        img = img.resize((math.ceil(img.width * s), math.ceil(img.height * s)), Image.Resampling.LANCZOS)
        left, top = (img.width - width) // 2, (img.height - height) // 2
        return np.asarray(img.crop((left, top, left + width, top + height))).copy(), str(photos[0])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([xx / width, yy / height, 0.5 + 0.3 * np.sin(xx / 17) * np.cos(yy / 13)], -1)
    return (rgb * 255).astype(np.uint8), "synthetic"


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 24) -> str:
    """Static camera: the background never moves; a disc, a square and a line of text drift slowly."""
    bg, source = background(width, height)
    rate = 48000
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps, options={"crf": "16"})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = out.add_stream("aac", rate=rate, layout="stereo")
        spf = rate // fps
        for i in range(frames):
            img = bg.copy()
            u = width / 320  # motion scales with the frame: ~1.5 px/frame at 320 wide
            cv2.circle(img, (int(width * 0.2 + 1.5 * u * i), int(height * 0.7)), int(14 * u), (250, 200, 40), -1)
            cv2.rectangle(img, (int(width * 0.7 - u * i), int(height * 0.15)), (int(width * 0.7 - u * i + 24 * u), int(height * 0.15 + 24 * u)), (40, 90, 230), -1)
            cv2.putText(img, "deepdream", (int(width * 0.3 + u * i), int(height * 0.45)), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * u, (255, 255, 255), max(1, int(2 * u)), cv2.LINE_AA)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
            t = (np.arange(spf) + i * spf) / rate
            tone = (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            af.sample_rate, af.pts = rate, i * spf
            out.mux(a.encode(af))
        out.mux(v.encode(None))
        out.mux(a.encode(None))
    return source


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="320x180", help="flicker clip size (default 320x180)")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--octaves", type=int, default=3)
    p.add_argument("--blends", default="0.8", help="comma-separated --blend values to try with --flow dis (default 0.8)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--speed-frames", type=int, default=3, help="frames timed at 640x360 with default settings")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-flicker", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(f"torch threads: {torch.get_num_threads()}  (CPU shared with other jobs: wall times are pessimistic)")
    t = time.perf_counter()
    backbone = load_backbone("efficientnet_lite0", pretrained=True)
    print(f"network loaded once in {time.perf_counter() - t:.1f}s")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_flicker:
            clip = tmp / "static.mp4"
            source = make_clip(clip, width, height, args.frames)
            settings = Settings(iterations=args.iterations, octaves=args.octaves, seed=0)
            print(f"\nclip: {width}x{height}, {args.frames} frames, static camera, background {source}")
            print(f"settings: efficientnet_lite0 blocks.4, {args.iterations} iterations x {args.octaves} octaves, seed 0")
            print("flicker = mean |frame[t+1] - frame[t]|, strength = mean |output - input| (0..255, from the encoded files)")
            inputs = list(read_frames(clip))
            print(f"{'mode':<28}{'flicker':>9}{'vs none':>9}{'strength':>10}{'s/frame':>9}")
            print(f"{'input clip':<28}{flicker(inputs):>9.2f}")
            runs = [("none", 0.0)] + [("dis", float(b)) for b in args.blends.split(",")] + [("farneback", 0.8)]
            base = None
            for flow, blend in runs:
                out = tmp / f"{flow}{blend}.mp4"
                r = dream_video(clip, out, settings, flow=flow, blend=blend, backbone=backbone)
                outs = list(read_frames(out))
                f = flicker(outs)
                base = base or f
                label = f"--flow {flow}" + (f" --blend {blend:g}" if flow != "none" else "")
                print(f"{label:<28}{f:>9.2f}{base / f:>8.2f}x{_strength(outs, inputs):>10.2f}{r.seconds / r.dreamed:>9.2f}")
            # the blend alone: carried frames re-dreamed at full strength (refresh = 1)
            with _full_refresh():
                r = dream_video(clip, tmp / "full.mp4", settings, flow="dis", blend=0.8, backbone=backbone)
            outs = list(read_frames(tmp / "full.mp4"))
            f = flicker(outs)
            label = "dis 0.8, full re-dream"
            print(f"{label:<28}{f:>9.2f}{base / f:>8.2f}x{_strength(outs, inputs):>10.2f}{r.seconds / r.dreamed:>9.2f}")
            # a fresh random seed per frame: what naive frame-by-frame scripts do
            outs = _random_seed_frames(inputs, settings, backbone)
            f = flicker(outs)
            print(f"{'none, new seed every frame':<28}{f:>9.2f}{base / f:>8.2f}x{_strength(outs, inputs):>10.2f}")

        if not args.skip_speed:
            clip = tmp / "speed.mp4"
            make_clip(clip, 640, 360, max(args.speed_frames, 2))
            frames = list(read_frames(clip))
            for flow in ("dis", "farneback"):
                coherence = FlowCoherence(flow, 0.8)
                t = time.perf_counter()
                for _ in range(5):
                    coherence(frames[1], frames[0], frames[0])
                print(f"640x360 flow + warp + blend, --flow {flow}: {(time.perf_counter() - t) / 5 * 1000:.0f} ms/frame")
            for flow in ("dis", "none"):
                r = dream_video(clip, tmp / f"speed_{flow}.mp4", Settings(seed=0), flow=flow, backbone=backbone)
                print(f"\n640x360, default settings (10 iterations x 4 octaves), --flow {flow}: "
                      f"{r.seconds / r.dreamed:.1f} s/frame over {r.dreamed} frames")


@contextlib.contextmanager
def _full_refresh():
    """Switch off the strength-preserving refresh, to show what the blend does on its own."""
    original = video.FlowCoherence.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.refresh = 1.0

    video.FlowCoherence.__init__ = init
    try:
        yield
    finally:
        video.FlowCoherence.__init__ = original


def _strength(outputs: list[np.ndarray], inputs: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(o.astype(np.float32) - i).mean() for o, i in zip(outputs, inputs)]))


def _random_seed_frames(frames: list[np.ndarray], settings: Settings, backbone) -> list[np.ndarray]:
    outs = []
    for i, frame in enumerate(frames):
        with FrameDreamer(settings.replace(seed=1000 + i), backbone) as dreamer:
            outs.append(dreamer.dream(frame))
    return outs


if __name__ == "__main__":
    main()
