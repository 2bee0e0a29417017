"""Seconds per dream, against a straightforward baseline and against bare forward+backward.

    python benchmarks/speed.py [--size 512x384] [--model efficientnet_lite0] [--layers blocks.4] [--repeats 3]

Variants, all with the same octave sizes and step count, run interleaved in one process (medians):
- naive:   the whole network, NCHW, fp32, activations taken with a hook (what most DeepDream repos do);
- fp32 / bf16 / fp16: our Dreamer (truncated network, batch norm folded, channels_last, autocast);
- bare fp32 / bare bf16: forward+backward of the same truncated network at the same sizes, nothing else.
Loop overhead = ours / bare - 1 (target <= 5%). Activation gain = energy after / before, per precision.
On CUDA the same script measures the GPU (fp16/bf16 autocast + channels_last).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import deepdream
from deepdream.engine.objectives import build_objective
from deepdream.engine.octaves import Dreamer, octave_sizes, resize
from deepdream.engine.tiling import fits_one_tile
from deepdream.runtime import autocast, resolve_device


def synthetic(width: int, height: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, height, width), 9, 1, 4)


def load_photo(path: str | None, width: int, height: int) -> torch.Tensor:
    if path is None:
        return synthetic(width, height)
    from deepdream.imagefiles import load_image

    return resize(load_image(path)[0], (height, width))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive_dream(model, mean, std, layer, image, sizes, steps, step_size):
    """The straightforward implementation: full network, NCHW fp32, no early stop."""
    acts = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    try:
        detail = torch.zeros_like(resize(image, sizes[0]))
        for size in sizes:
            base = resize(image, size)
            x = (base + resize(detail, size)).clamp(0, 1)
            for _ in range(steps):
                x = x.detach().requires_grad_(True)
                model((x - mean) / std)
                loss = acts["a"].pow(2).mean()
                loss.backward()
                g = x.grad
                x = (x + step_size * g / (g.abs().mean() + 1e-8)).clamp(0, 1)
            detail = x.detach() - base
    finally:
        handle.remove()
    return x.detach()


def bare(dreamer: Dreamer, image, sizes, steps):
    """Forward + backward of the truncated network only, at the dream's sizes."""
    for size in sizes:
        x = resize(image, size)
        for _ in range(steps):
            xi = x.detach().requires_grad_(True)
            with autocast(xi.device, dreamer.precision):
                acts = dreamer.taps(dreamer.backbone.normalize(xi).contiguous(memory_format=torch.channels_last))
                loss = dreamer.objective(acts).sum()
            loss.backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="512x384")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--layers", default=None)
    parser.add_argument("--photo", default=None, help="a photo to dream instead of a synthetic image")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--octaves", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--precisions", default=None, help="default: fp32,bf16 (CPU), fp32,fp16,bf16 (CUDA)")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="time a torchvision network without its download (speed does not depend on the values)",
    )
    args = parser.parse_args()

    device = resolve_device(args.device)
    w, h = map(int, args.size.split("x"))
    image = load_photo(args.photo, w, h).to(device)
    pretrained = not args.random_weights
    backbone = deepdream.load_backbone(args.model, device=device, pretrained=pretrained)
    naive_model = deepdream.load_backbone(args.model, device=device, channels_last=False, pretrained=pretrained).model
    mean = torch.tensor(backbone.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, device=device).view(1, 3, 1, 1)
    base = deepdream.Settings(
        seed=0, layers=args.layers, octaves=args.octaves, iterations=args.iterations, max_size=max(w, h)
    )
    layer = build_objective(backbone, base).layers
    layer = next(iter(layer))
    sizes = octave_sizes(h, w, base.octaves, base.octave_scale, backbone.min_size)
    steps = base.steps
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"# {args.model} {layer} {w}x{h}, {len(sizes)} octaves x {steps} steps, {device.type} ({name}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    precisions = args.precisions or ("fp32,fp16,bf16" if device.type == "cuda" else "fp32,bf16")
    dreamers = {
        p: Dreamer(backbone, build_objective(backbone, base.replace(precision=p)), base.replace(precision=p))
        for p in precisions.split(",")
    }
    jobs = {}
    if not args.no_naive:
        jobs["naive fp32 NCHW"] = lambda: naive_dream(
            naive_model, mean, std, layer, image, sizes, steps, base.step_size
        )
    for p, d in dreamers.items():
        jobs[f"ours {p}"] = lambda d=d: d.dream(image)
        jobs[f"bare {p}"] = lambda d=d: bare(d, image, sizes, steps)

    for job in jobs.values():  # warm-up (allocator, oneDNN/cuDNN kernel selection)
        job()
    times = {k: [] for k in jobs}
    for _ in range(args.repeats):
        for k, job in jobs.items():
            sync(device)
            t = time.perf_counter()
            job()
            sync(device)
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}

    d = next(iter(dreamers.values()))
    if d.tile:
        one = fits_one_tile(h, w, d.tile, d.margin)
        print(
            f"# tile core {d.tile} px + margin {d.margin} px: the full-size octave is {'one pass' if one else 'tiled'}"
        )
    ref = med.get("naive fp32 NCHW")
    print(f"{'variant':<18} {'s/dream':>8} {'speed-up vs naive':>18} {'overhead vs bare':>17}")
    for k, t in med.items():
        speed = f"{ref / t:.2f}x" if ref else "-"
        overhead = ""
        if k.startswith("ours"):
            overhead = f"{(t / med['bare ' + k.split()[1]] - 1) * 100:+.1f}%"
        print(f"{k:<18} {t:8.2f} {speed:>18} {overhead:>17}")

    for p, d in dreamers.items():
        before = d.score(image).item()
        after = d.score(d.dream(image)).item()
        print(f"activation gain {p}: {after / before:.2f}x ({before:.1f} -> {after:.1f})")


if __name__ == "__main__":
    main()
