"""Does a default dream take hold at every size? Activation gain by picture size, on photos not tuned on.

    python benchmarks/sizes.py [--data ../shared/data/cats-vs-dogs] [--n 6]

For N test photos (half cats, half dogs), each shrunk to a long side of 64 ... 512 px, plus the test
photos whose short side is below 130 px as they are: the mean squared activation of the default layer
after a default dream over before (target: >= 2x at every size), both measured at the picture's own
size, and seconds per dream. The small-picture rule (`engine/octaves.py: octave_plan`) was tuned
on train/ photos (`--split train`); the default reads test/ only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import deepdream
from deepdream import imagefiles
from deepdream.engine.objectives import build_objective
from deepdream.engine.octaves import Dreamer, resize

LONG_SIDES = (64, 96, 128, 150, 192, 256, 320, 384, 512)


def shrink(rgb, long_side: int):
    h, w = rgb.shape[-2:]
    f = long_side / max(h, w)
    return resize(rgb, (max(1, round(h * f)), max(1, round(w * f))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "../shared/data/cats-vs-dogs"))
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--split", default="test", choices=("test", "train"), help="train/ is for tuning only")
    args = parser.parse_args()
    test = Path(args.data) / args.split
    if not test.is_dir():
        raise SystemExit(f"no data at {test}")
    photos = (
        sorted((test / "cats").glob("*.jpg"))[: args.n // 2]
        + sorted((test / "dogs").glob("*.jpg"))[: args.n - args.n // 2]
    )
    small = [p for p in sorted(test.rglob("*.jpg")) if min(imagefiles.open_image(p).size) < 130]
    backbone = deepdream.load_backbone()
    settings = deepdream.Settings(seed=0)
    with Dreamer(backbone, build_objective(backbone, settings), settings) as dreamer:

        def gain(rgb) -> tuple[float, float, int]:
            t = time.perf_counter()
            out = dreamer.dream(rgb)
            seconds = time.perf_counter() - t
            return (
                dreamer.score(out).item() / dreamer.score(rgb).item(),
                seconds,
                dreamer.steps_per_image(*rgb.shape[-2:]),
            )

        print(f"{'long side':>9} {'photos':>6} {'gain mean':>9} {'min':>6} {'steps':>5} {'s/dream':>7}")
        for side in LONG_SIDES:
            rows = [gain(shrink(imagefiles.load_image(p)[0], side)) for p in photos]
            g = [r[0] for r in rows]
            print(
                f"{side:>9} {len(rows):>6} {statistics.mean(g):>8.2f}x {min(g):>5.2f}x {rows[0][2]:>5} "
                f"{statistics.mean(r[1] for r in rows):>7.2f}",
                flush=True,
            )
        print("\n# test photos with a short side below 130 px, as they are")
        for p in small:
            rgb = imagefiles.load_image(p)[0]
            if min(rgb.shape[-2:]) < backbone.min_size:
                print(
                    f"{p.name:<16} {rgb.shape[-1]}x{rgb.shape[-2]}: below the network's {backbone.min_size} px minimum"
                )
                continue
            g, s, steps = gain(rgb)
            print(
                f"{p.name:<16} {rgb.shape[-1]}x{rgb.shape[-2]:<4} gain {g:.2f}x  {steps} steps  {s:.2f} s", flush=True
            )


if __name__ == "__main__":
    main()
