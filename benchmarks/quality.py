"""Does the default dream visibly dream? Activation gain and class targeting on real photos.

    python benchmarks/quality.py [--data ../shared/data/cats-vs-dogs] [--n 8] [--gallery docs/gallery]

For N test photos (half cats, half dogs): the mean squared activation of the default layer before and
after a default dream (target: >= 2x), and for the cats, the softmax probability of "golden retriever"
before and after `--target-class "golden retriever"` (target: < 5% -> > 50%). With --gallery, writes
side-by-side input | dream JPEGs made by the tool itself.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

import deepdream
from deepdream import imagefiles
from deepdream.engine.objectives import build_objective
from deepdream.engine.octaves import Dreamer
from deepdream.engine.taps import OUTPUT, Taps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "../shared/data/cats-vs-dogs"))
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--target", default="golden retriever")
    parser.add_argument("--gallery", default=None, help="folder for side-by-side JPEGs")
    parser.add_argument("--max-size", type=int, default=512)
    args = parser.parse_args()

    test = Path(args.data) / "test"
    if not test.is_dir():
        raise SystemExit(f"no data at {test}")
    cats = sorted((test / "cats").glob("*.jpg"))[: args.n // 2]
    dogs = sorted((test / "dogs").glob("*.jpg"))[: args.n - len(cats)]
    backbone = deepdream.load_backbone()
    settings = deepdream.Settings(seed=0, max_size=args.max_size)
    target = backbone.resolve_class(args.target)
    class_settings = settings.replace(target_class=args.target)

    def prob(x: torch.Tensor) -> float:
        with Taps(backbone.model, [OUTPUT]) as taps, torch.no_grad():
            return torch.softmax(taps(backbone.normalize(x))[OUTPUT].float(), 1)[0, target].item()

    gains, probs, seconds = [], [], []
    print(
        f"# default settings: {backbone.name} layer {build_objective(backbone, settings).layers}, "
        f"{settings.octaves} octaves x {settings.steps} steps, step {settings.step_size}, "
        f"precision {settings.precision}"
    )
    print(
        f"{'photo':<16} {'size':>9} {'energy before':>14} {'after':>8} {'gain':>6} "
        f"{'p(target) before':>17} {'after':>7}"
    )
    with (
        Dreamer(backbone, build_objective(backbone, settings), settings) as dreamer,
        Dreamer(backbone, build_objective(backbone, class_settings), class_settings) as classer,
    ):
        for path in cats + dogs:
            rgb, _ = imagefiles.load_image(path, args.max_size)
            t = time.perf_counter()
            out = dreamer.dream(rgb)
            seconds.append(time.perf_counter() - t)
            before, after = dreamer.score(rgb).item(), dreamer.score(out).item()
            gains.append(after / before)
            line = (
                f"{path.name:<16} {rgb.shape[-1]}x{rgb.shape[-2]:<5} {before:14.1f} {after:8.1f} {after / before:5.2f}x"
            )
            if path in cats:
                p0, p1 = prob(rgb), prob(classer.dream(rgb))
                probs.append((p0, p1))
                line += f" {p0:17.4f} {p1:7.3f}"
            print(line, flush=True)
            if args.gallery:
                gallery = Path(args.gallery)
                gallery.mkdir(parents=True, exist_ok=True)
                a, b = imagefiles.tensor_to_pil(rgb), imagefiles.tensor_to_pil(out)
                sheet = Image.new("RGB", (a.width * 2 + 8, a.height), "white")
                sheet.paste(a, (0, 0))
                sheet.paste(b, (a.width + 8, 0))
                sheet.thumbnail((768, 768))
                imagefiles.save_image(
                    sheet, gallery / f"dream_{path.stem.replace('.', '_')}.jpg", metadata=settings.to_json()
                )
    print(
        f"energy gain: mean {statistics.mean(gains):.2f}x, min {min(gains):.2f}x over {len(gains)} photos "
        f"({statistics.mean(seconds):.1f} s per dream)"
    )
    if probs:
        print(
            f"p({args.target}) on cats: before max {max(p for p, _ in probs):.4f}, "
            f"after min {min(q for _, q in probs):.3f}, mean {statistics.mean(q for _, q in probs):.3f}"
        )


if __name__ == "__main__":
    main()
