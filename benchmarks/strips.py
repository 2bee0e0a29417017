"""Pictures below the network's minimum side: does a default dream take hold on a strip?

    python benchmarks/strips.py [--data ../shared/data/cats-vs-dogs] [--n 3] [--long 512] [--heights 4,20,31]

Each of N test photos is cut to a horizontal band through its middle, `long` px wide and `height` px
high (below efficientnet_lite0's 32 px). A default dream runs on it (before issue 23: refused). The gain is
the mean squared activation of the default layer after / before, measured on the working copy's size
(`engine/octaves.py: working_size`), where the network sees it; plus CPU and wall seconds per dream.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import deepdream
from deepdream import imagefiles
from deepdream.engine.octaves import Dreamer, resize, working_size


def band(rgb: torch.Tensor, long: int, height: int) -> torch.Tensor:
    """The photo scaled to `long` px wide, then `height` rows through its middle: 1 x 3 x height x long."""
    h, w = rgb.shape[-2:]
    scaled = resize(rgb, (max(height, round(h * long / w)), long))
    top = (scaled.shape[-2] - height) // 2
    return scaled[..., top : top + height, :].contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "../shared/data/cats-vs-dogs"))
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--long", type=int, default=512)
    parser.add_argument("--heights", default="4,20,31")
    args = parser.parse_args()
    photos = sorted((Path(args.data) / "test").rglob("*.jpg"))[:: max(1, 500 // args.n)][: args.n]
    backbone = deepdream.load_backbone("efficientnet_lite0")
    settings = deepdream.Settings(seed=0, precision="fp32")
    print(f"{len(photos)} photos, {args.long} px wide, torch threads {torch.get_num_threads()}")
    print("| height | working copy | steps | gain mean | gain worst | CPU s / dream | wall s / dream |")
    print("|---|---|---|---|---|---|---|")
    for height in map(int, args.heights.split(",")):
        gains, cpu, wall = [], [], []
        with Dreamer.from_settings(settings, backbone) as dreamer:
            for path in photos:
                strip = band(imagefiles.load_image(path)[0], args.long, height)
                size = working_size(height, args.long, backbone.min_size)
                c, t = time.process_time(), time.perf_counter()
                out = dreamer.dream(strip)
                cpu.append(time.process_time() - c)
                wall.append(time.perf_counter() - t)
                assert out.shape == strip.shape
                gains.append(dreamer.score(resize(out, size)).item() / dreamer.score(resize(strip, size)).item())
            steps = dreamer.steps_per_image(height, args.long)
        print(
            f"| {height} | {size[1]}x{size[0]} | {steps} | {statistics.mean(gains):.2f}x | {min(gains):.2f}x "
            f"| {statistics.mean(cpu):.1f} | {statistics.mean(wall):.1f} |"
        )


if __name__ == "__main__":
    main()
