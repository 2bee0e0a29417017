"""Which networks gain from bf16? One gradient (forward + backward to the pixels) per network and precision.

    python benchmarks/precision.py [--size 384x288] [--device cpu]

Each network runs as the dream runs it (truncated at its default layer, batch norm folded,
channels_last). torchvision networks use random weights: the timing does not depend on their values
(denormals are flushed so that untrained activations cannot slow fp32 down). The result is the basis of
precision `auto`: bf16 on CPUs with native bf16, except for depthwise (memory-bound) networks.
"""

from __future__ import annotations

import argparse
import time

import torch

import deepdream
from deepdream.engine.folding import fold_batchnorm
from deepdream.engine.taps import Taps
from deepdream.models.registry import BACKBONES
from deepdream.runtime import autocast, native_bf16, resolve_device


def seconds_per_gradient(backbone, taps, layer, image, precision, repeats) -> float:
    def once():
        x = image.detach().requires_grad_(True)
        with autocast(x.device, precision):
            a = taps(backbone.normalize(x).contiguous(memory_format=torch.channels_last))[layer]
        torch.autograd.grad(a.float().pow(2).mean(), x)

    once()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        once()
        if image.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="384x288")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    device = resolve_device(args.device)
    w, h = map(int, args.size.split("x"))
    image = torch.rand(1, 3, h, w, device=device)
    print(
        f"# {w}x{h}, {device.type}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"native bf16: {native_bf16(device)}"
    )
    print(f"{'network':<20} {'layer':<12} {'fp32 s':>8} {'bf16 s':>8} {'bf16 speed-up':>14}")
    for name in BACKBONES:
        backbone = deepdream.load_backbone(name, pretrained=name == "efficientnet_lite0", device=device)
        layer = backbone.recommended_layers[0]
        with Taps(fold_batchnorm(backbone.model, keep=[layer]), [layer]) as taps:
            fp32, bf16 = (seconds_per_gradient(backbone, taps, layer, image, p, args.repeats) for p in ("fp32", "bf16"))
        print(f"{name:<20} {layer:<12} {fp32:8.3f} {bf16:8.3f} {fp32 / bf16:13.2f}x", flush=True)


if __name__ == "__main__":
    main()
