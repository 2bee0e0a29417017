"""Class pictures judged by a network that did not make them.

For each class and method the picture is made with `deepdream.dream(init="fourier", ...)` (the
library call behind `deepdream dream --init fourier --target-class C`), saved as 8-bit RGB, resized
to 224 px (PIL bilinear) and classified by every EfficientNet-Lite: the networks that made it ("own")
and the others ("other", never used in making it). Prints one row per class x method.

    OMP_NUM_THREADS=1 python benchmarks/classvis.py [--classes "golden retriever,volcano"] [--steps 256]
        [--methods old,class,class+lite1] [--seed 0] [--save DIR]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import deepdream
from deepdream.featurevis import RECIPES

NETWORKS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CLASSES = ("golden retriever", "volcano", "lemon", "tabby")


@dataclass(frozen=True)
class Method:
    """How a class picture is made: the recipe, the network, and the ensemble networks."""

    recipe: str
    model: str = "efficientnet_lite0"
    ensemble: tuple[str, ...] = ()

    @property
    def makers(self) -> tuple[str, ...]:
        return (self.model, *self.ensemble)


METHODS = {
    # the command of the issue: lucid's channel recipe (1 view, small transforms) on one network
    "old": Method("feature"),
    "class": Method("class"),
    "class+lite1": Method("class", ensemble=("efficientnet_lite1",)),
    "class+lite2": Method("class", ensemble=("efficientnet_lite2",)),
    "lite1+lite2": Method("class", model="efficientnet_lite1", ensemble=("efficientnet_lite2",)),
}


def probability(backbone: deepdream.Backbone, picture: Image.Image, index: int) -> float:
    """p(class) for an 8-bit picture resized to 224 px, as a user's classifier would see the file."""
    rgb = np.asarray(picture.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), dtype=np.float32)
    x = torch.from_numpy(rgb / 255.0).permute(2, 0, 1)[None]  # 1 x 3 x 224 x 224
    with torch.no_grad():
        return backbone.model(backbone.normalize(x)).softmax(1)[0, index].item()


def make(method: Method, name: str, args, nets: dict) -> tuple[Image.Image, float]:
    """The picture (8-bit, as saved) and the seconds it took."""
    settings = deepdream.Settings(
        model=method.model, ensemble=method.ensemble, init="fourier", target_class=name, size=(args.size, args.size),
        iterations=args.steps, seed=args.seed, precision="fp32",
    )
    start = time.perf_counter()
    if method.recipe == "class":
        picture = deepdream.dream(None, settings=settings, backbone=nets[method.model])
    else:  # the old recipe: render directly, as before class pictures had their own recipe
        picture = _render_old(settings, nets[method.model], name)
    return picture, time.perf_counter() - start


def _render_old(settings: deepdream.Settings, backbone: deepdream.Backbone, name: str) -> Image.Image:
    from deepdream.featurevis import render
    from deepdream.engine.objectives import ClassLogProb

    out = render(backbone, ClassLogProb(backbone.resolve_class(name)), width=settings.size[0], height=settings.size[1],
                 steps=settings.iterations, generator=torch.Generator().manual_seed(settings.seed), recipe="feature")
    return Image.fromarray((out[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--methods", default="old,class,class+lite1")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="folder for the pictures")
    args = parser.parse_args()
    methods = {m: METHODS[m] for m in args.methods.split(",")}
    nets = {n: deepdream.load_backbone(n) for n in NETWORKS}
    print(f"{args.size}x{args.size}, {args.steps} steps, seed {args.seed}, fp32, {torch.get_num_threads()} thread(s); "
          f"recipes: {', '.join(f'{k} ({r.views} views, decay {r.decay_power})' for k, r in RECIPES.items())}\n")
    print("| class | method | made with | own-net p (224 px) | other-net p (224 px) | seconds |")
    print("|---|---|---|---|---|---|")
    for name in args.classes.split(","):
        index = nets[NETWORKS[0]].resolve_class(name)
        for label, method in methods.items():
            picture, seconds = make(method, name, args, nets)
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                picture.save(args.save / f"{name.replace(' ', '_')}_{label}.png")
            p = {n: probability(net, picture, index) for n, net in nets.items()}
            own = ", ".join(f"{n.removeprefix('efficientnet_')} {p[n]:.3f}" for n in method.makers)
            other = ", ".join(f"{n.removeprefix('efficientnet_')} {p[n]:.3f}" for n in NETWORKS if n not in method.makers)
            makers = "+".join(n.removeprefix("efficientnet_") for n in method.makers)
            print(f"| {name} | {label} | {makers} | {own} | {other} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
