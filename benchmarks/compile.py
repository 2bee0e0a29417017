"""Does torch.compile speed up the dream's forward+backward? (issue 6: keep --compile only if it helps)

    python benchmarks/compile.py [--size 512x384] [--device cpu] [--mode default]

Compiles the embedded network truncated at blocks.4 (batch norm folded, channels_last, as the dream runs
it) and times one gradient (forward + backward to the pixels) eager against compiled, after warm-up.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import deepdream
from deepdream.engine.folding import fold_batchnorm
from deepdream.runtime import autocast, resolve_device, resolve_precision


def timed(fn, image, repeats, device):
    def once():
        x = image.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(x).float().pow(2).mean(), x)
        return g

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t = time.perf_counter()
    once()
    sync()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        once()
        sync()
        times.append(time.perf_counter() - t)
    return min(times), first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="512x384")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--mode", default="default", help="torch.compile mode")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    w, h = map(int, args.size.split("x"))
    backbone = deepdream.load_backbone(device=device)
    m = fold_batchnorm(backbone.model, keep=["blocks.4"])
    truncated = nn.Sequential(m.conv_stem, m.bn1, *m.blocks[:5])

    def run(net):
        def f(x):
            with autocast(device, precision):
                return net(backbone.normalize(x).contiguous(memory_format=torch.channels_last))

        return f

    image = torch.rand(1, 3, h, w, device=device)
    eager, _ = timed(run(truncated), image, args.repeats, device)
    compiled, first = timed(run(torch.compile(truncated, mode=args.mode)), image, args.repeats, device)
    print(
        f"# efficientnet_lite0 to blocks.4, {w}x{h}, {device.type}, {precision}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"eager    {eager:.4f} s per gradient")
    print(f"compiled {compiled:.4f} s per gradient ({eager / compiled:.2f}x), first call {first:.1f} s (compilation)")


if __name__ == "__main__":
    main()
