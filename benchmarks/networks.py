"""Every claimed network family dreams: seconds per step and peak memory at 320x240, 1000x300 and 4K (tiled).

Each family's smallest timm variant is built with random weights (pretrained=False: the hub cannot be
reached here) and dreams its first recommended layer (layer energy, one octave, fixed steps) at each
size, in a fresh process so the peak resident memory (ru_maxrss) is that run's own. The table gives
wall and CPU seconds per ascent step, the peak memory above the loaded network, the tile side the
engine chose (0: one pass, no tiles), the layer energy before and after (it must rise), and how many
layers `deepdream layers` lists.

    nice -n 5 python benchmarks/networks.py [--families ResNet,ViT] [--sizes 320x240,1000x300,3840x2160]
        [--steps 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

FAMILIES = {
    "ResNet": "timm:resnet10t",
    "ConvNeXt": "timm:convnext_atto",
    "EfficientNet": "timm:efficientnet_b0",
    "RegNet": "timm:regnetx_002",
    "ViT": "timm:vit_tiny_patch16_224",
    "DeiT": "timm:deit_tiny_patch16_224",
    "Swin": "timm:swin_tiny_patch4_window7_224",
}
SIZES = "320x240,1000x300,3840x2160"
TILED_FROM = 2000 * 2000  # pixels from which only the step is timed (no untiled energy probe at 4K)


def child(name: str, width: int, height: int, steps: int, threads: int) -> dict:
    """One dream in this process: timings, peak memory, energies."""
    import torch

    from deepdream.engine.objectives import Energy
    from deepdream.engine.octaves import Dreamer
    from deepdream.engine.taps import Taps
    from deepdream.models.load import load_backbone
    from deepdream.settings import Settings

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    backbone = load_backbone(name, pretrained=False)
    layer = backbone.recommended_layers[0]
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))

    def energy(x: torch.Tensor) -> float:
        with Taps(backbone.model, [layer]) as taps, torch.no_grad():
            return Energy(layer)(taps(backbone.normalize(x))).item()

    small = width * height < TILED_FROM
    before = energy(image) if small else float("nan")
    settings = Settings(layers=layer, octaves=1, iterations=steps, precision="fp32", seed=0)
    with Dreamer(backbone, Energy(layer), settings) as dreamer:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        wall, cpu = time.perf_counter(), time.process_time()
        out = dreamer.dream(image, torch.Generator().manual_seed(0))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        tile = dreamer.tile or 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    after = energy(out) if small else float("nan")
    return {
        "layer": layer,
        "wall": wall / steps,
        "cpu": cpu / steps,
        "peak_mb": (peak - base) / 1024,
        "tile": tile if tile < max(width, height) else 0,
        "before": before,
        "after": after,
        "layers": len(backbone.layer_names()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--sizes", default=SIZES)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("NAME", "WIDTH", "HEIGHT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, width, height = args.child
        print(json.dumps(child(name, int(width), int(height), args.steps, args.threads)))
        return
    print(
        f"random weights, fp32, CPU, {args.threads} thread(s), {args.steps} step(s) per size (4K: 1), one octave; "
        "peak = resident memory above the loaded network\n"
    )
    print(
        "| family | model | layer | size | s/step (wall) | s/step (CPU) | peak MB | tile | energy before -> after "
        "| layers |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for family in args.families.split(","):
        name = FAMILIES[family]
        for size in args.sizes.split(","):
            width, height = size.split("x")
            steps = 1 if int(width) * int(height) >= TILED_FROM else args.steps  # 4K: one (tiled) step
            run = subprocess.run(
                [sys.executable, __file__, "--child", name, width, height, "--steps", str(steps),
                 "--threads", str(args.threads)], capture_output=True, text=True,
            )  # fmt: skip
            if run.returncode != 0:
                print(f"| {family} | {name} | - | {size} | failed: {run.stderr.strip().splitlines()[-1]} |", flush=True)
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            rise = (
                f"{r['before']:.4g} -> {r['after']:.4g} ({r['after'] / r['before']:.3f}x)"
                if r["before"] == r["before"]
                else "-"
            )
            print(
                f"| {family} | {name} | {r['layer']} | {size} | {r['wall']:.2f} | {r['cpu']:.2f} | "
                f"{r['peak_mb']:.0f} | {r['tile']} | {rise} | {r['layers']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
