"""Peak resident memory of a default dream at several image sizes (each in a fresh process).

    python benchmarks/memory.py --sizes 960x540 1920x1080 3840x2160 7680x4320

Prints one row per size: pixels, peak RSS, RSS above the loaded-model baseline, seconds, tile size.
Target (issue 6): 7680x4320 at most 6 GB, and growth no faster than linear in pixel count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
import deepdream
from deepdream.engine.objectives import build_objective
from deepdream.engine.octaves import Dreamer
w, h, iterations, octaves = map(int, sys.argv[1:5])
settings = deepdream.Settings(seed=0, max_size=max(w, h), iterations=iterations, octaves=octaves)
backbone = deepdream.load_backbone(device="cpu")
y = torch.linspace(0, 1, h).view(1, 1, h, 1)
x = torch.linspace(0, 1, w).view(1, 1, 1, w)
image = torch.cat([x.expand(1, 1, h, w), y.expand(1, 1, h, w), (x * y).expand(1, 1, h, w)], 1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
with Dreamer(backbone, build_objective(backbone, settings), settings) as dreamer:
    t = time.perf_counter()
    out = dreamer.dream(image)
    seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"base_gb": base, "peak_gb": peak, "seconds": seconds}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["960x540", "1920x1080", "3840x2160", "7680x4320"])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--octaves", type=int, default=4)
    args = parser.parse_args()
    print(f"{'size':>10} {'Mpx':>6} {'peak GB':>8} {'above model GB':>15} {'GB/Mpx':>7} {'seconds':>8}")
    for size in args.sizes:
        w, h = map(int, size.split("x"))
        cmd = [sys.executable, "-c", CHILD, str(w), str(h), str(args.iterations), str(args.octaves)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{size:>10} failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        mpx = w * h / 1e6
        above = r["peak_gb"] - r["base_gb"]
        print(
            f"{size:>10} {mpx:6.2f} {r['peak_gb']:8.2f} {above:15.2f} {above / mpx:7.3f} {r['seconds']:8.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
