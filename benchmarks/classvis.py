"""Class pictures judged by a network that did not make them.

For each class and method the picture is made with `deepdream.dream(init="fourier" or "maco", ...)` (the
library call behind `deepdream dream --init fourier --target-class C`), saved as 8-bit RGB, resized
to 224 px (PIL bilinear) and classified by every EfficientNet-Lite: the networks that made it ("own")
and the others ("other", never used in making it): transferability. Plausibility, as MACO (Fel et al.
2023) reports it: the cosine similarity, in the pooled features of a network that did not make the
picture (efficientnet_lite2), between the picture and the mean of real photos of the class (--photos:
a folder per class; cats-vs-dogs has cats for "tabby" and dogs for the dog classes). Prints one row per
class x method.

    OMP_NUM_THREADS=1 python benchmarks/classvis.py [--classes "golden retriever,volcano"] [--steps 256]
        [--methods old,class,class+lite1,maco] [--seed 0] [--save DIR] [--photos DIR]
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
from deepdream.featurevis import LOOKS

NETWORKS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CLASSES = ("golden retriever", "volcano", "lemon", "tabby")


@dataclass(frozen=True)
class Method:
    """How a class picture is made: the look, the network, and the ensemble networks."""

    look: str
    model: str = "efficientnet_lite0"
    ensemble: tuple[str, ...] = ()

    @property
    def makers(self) -> tuple[str, ...]:
        return (self.model, *self.ensemble)


METHODS = {
    # the command of the issue: lucid's channel look (1 view, small transforms) on one network
    "old": Method("feature"),
    "class": Method("class"),
    "class+lite1": Method("class", ensemble=("efficientnet_lite1",)),
    "class+lite2": Method("class", ensemble=("efficientnet_lite2",)),
    "lite1+lite2": Method("class", model="efficientnet_lite1", ensemble=("efficientnet_lite2",)),
    # MACO: only the phase of a photo spectrum moves (--init maco)
    "maco": Method("maco"),
}
# real photos of a class: the folder of --photos that holds them
PHOTO_FOLDERS = {"tabby": "cats", "golden retriever": "dogs", "beagle": "dogs", "Labrador retriever": "dogs"}
JUDGE = "efficientnet_lite2"  # the plausibility network: never a maker in the default methods


def probability(backbone: deepdream.Backbone, picture: Image.Image, index: int) -> float:
    """p(class) for an 8-bit picture resized to 224 px, as a user's classifier would see the file."""
    rgb = np.asarray(picture.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), dtype=np.float32)
    x = torch.from_numpy(rgb / 255.0).permute(2, 0, 1)[None]  # 1 x 3 x 224 x 224
    with torch.no_grad():
        return backbone.model(backbone.normalize(x)).softmax(1)[0, index].item()


def embedding(backbone: deepdream.Backbone, picture: Image.Image) -> torch.Tensor:
    """The judge's pooled features (before its classifier) of an 8-bit picture resized to 224 px."""
    rgb = np.asarray(picture.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), dtype=np.float32)
    x = torch.from_numpy(rgb / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        features = backbone.model.forward_features(backbone.normalize(x))
        return backbone.model.forward_head(features, pre_logits=True)[0]


def photo_prototype(backbone: deepdream.Backbone, folder: Path, count: int) -> torch.Tensor:
    """Mean embedding of the first `count` photos of a folder (sorted names)."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    return torch.stack([embedding(backbone, Image.open(p)) for p in paths]).mean(0)


def plausibility(backbone: deepdream.Backbone, picture: Image.Image, prototype: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(embedding(backbone, picture), prototype, dim=0).item()


def make(method: Method, name: str, args, nets: dict) -> tuple[Image.Image, float]:
    """The picture (8-bit, as saved) and the seconds it took."""
    settings = deepdream.Settings(
        model=method.model,
        ensemble=method.ensemble,
        init="maco" if method.look == "maco" else "fourier",
        target_class=name,
        size=(args.size, args.size),
        iterations=args.steps,
        seed=args.seed,
        precision="fp32",
    )
    start = time.perf_counter()
    if method.look in ("class", "maco"):
        picture = deepdream.dream(None, settings=settings, backbone=nets[method.model])
    else:  # the old look: render directly, as before class pictures had their own look
        picture = _render_old(settings, nets[method.model], name)
    return picture, time.perf_counter() - start


def _render_old(settings: deepdream.Settings, backbone: deepdream.Backbone, name: str) -> Image.Image:
    from deepdream.engine.objectives import ClassLogProb
    from deepdream.featurevis import render

    out = render(
        backbone,
        ClassLogProb(backbone.resolve_class(name)),
        width=settings.size[0],
        height=settings.size[1],
        steps=settings.iterations,
        generator=torch.Generator().manual_seed(settings.seed),
        look="feature",
    )
    return Image.fromarray((out[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--methods", default="old,class,class+lite1")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="folder for the pictures")
    parser.add_argument(
        "--photos",
        type=Path,
        default=Path("/work/shared/data/cats-vs-dogs/train"),
        help="real photos, a folder per class (plausibility)",
    )
    parser.add_argument("--photo-count", type=int, default=64)
    args = parser.parse_args()
    methods = {m: METHODS[m] for m in args.methods.split(",")}
    nets = {n: deepdream.load_backbone(n) for n in NETWORKS}
    prototypes: dict[str, torch.Tensor] = {}
    print(
        f"{args.size}x{args.size}, {args.steps} steps, seed {args.seed}, fp32, {torch.get_num_threads()} thread(s); "
        f"looks: {', '.join(f'{k} ({r.views} views)' for k, r in LOOKS.items())}\n"
    )
    print(
        f"| class | method | made with | own-net p (224 px) | other-net p (224 px) | plausibility ({JUDGE}) | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.classes.split(","):
        index = nets[NETWORKS[0]].resolve_class(name)
        for label, method in methods.items():
            picture, seconds = make(method, name, args, nets)
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                picture.save(args.save / f"{name.replace(' ', '_')}_{label}.png")
            p = {n: probability(net, picture, index) for n, net in nets.items()}
            own = ", ".join(f"{n.removeprefix('efficientnet_')} {p[n]:.3f}" for n in method.makers)
            other = ", ".join(
                f"{n.removeprefix('efficientnet_')} {p[n]:.3f}" for n in NETWORKS if n not in method.makers
            )
            makers = "+".join(n.removeprefix("efficientnet_") for n in method.makers)
            prototype = prototypes.get(name) if name in PHOTO_FOLDERS else None
            if prototype is None and name in PHOTO_FOLDERS and (args.photos / PHOTO_FOLDERS[name]).is_dir():
                prototype = prototypes[name] = photo_prototype(
                    nets[JUDGE], args.photos / PHOTO_FOLDERS[name], args.photo_count
                )
            plausible = "-" if prototype is None else f"{plausibility(nets[JUDGE], picture, prototype):.3f}"
            print(f"| {name} | {label} | {makers} | {own} | {other} | {plausible} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
