"""What the studio adds to a dream: one default dream through the studio's API vs the library, one process.

    python benchmarks/studio.py [--photo FILE] [--size 512x384] [--repeats 5]

*library*: `deepdream.dream(photo, settings, backbone)` and saving the PNG with its settings.
*studio*: the same dream through the running studio: `gradio_client` uploads the photo to `/dream`
on 127.0.0.1, the job waits its turn in the device line, reports every step, keeps a preview at each
octave's end and every 1.5 s, the page's event streams each preview back as a PNG, the result is
saved in the library and sent back. Same network object, same settings and seed, interleaved runs,
medians; overhead = studio / library - 1 (target <= 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def photo_file(path: str | None, size: tuple[int, int], folder: Path) -> Path:
    from PIL import Image

    if path is None:
        from conftest import synthetic_photo

        img = synthetic_photo(*size)
    else:
        img = Image.open(path).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    out = folder / "photo.png"
    img.save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", help="a photo (default: a synthetic one)")
    parser.add_argument("--size", default="512x384")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    import deepdream
    from deepdream import imagefiles
    from deepdream.studio.app import launch
    from deepdream.studio.library import Library
    from deepdream.studio.service import Studio

    folder = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    photo = photo_file(args.photo, size, folder)
    settings = deepdream.Settings(seed=7, device="cpu")  # the defaults: 4 octaves x 10 steps, efficientnet_lite0
    backbone = deepdream.load_backbone(settings.model, device="cpu")
    studio = Studio(Library(folder / "library"), runs=None, defaults=settings)
    studio.backbones.keep(settings, backbone)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app, url = launch(studio, port=port)
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)

    def library_run() -> None:
        img = deepdream.dream(photo, settings=settings, backbone=backbone)
        imagefiles.save_image(img, folder / "library.png", metadata=img.info["deepdream"])

    def studio_run() -> None:
        client.predict(handle_file(str(photo)), json.dumps({"seed": 7}), None, api_name="/dream")

    runs = {"library": library_run, "studio": studio_run}
    for fn in runs.values():  # warm-up: first calls pay for allocations and the HTTP connection
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    app.close()

    lib, std = statistics.median(times["library"]), statistics.median(times["studio"])
    print(f"{size[0]}x{size[1]} photo, default settings (4 octaves x 10 steps, {settings.model}), "
          f"{torch_threads()} threads, medians of {args.repeats}")
    print(f"| path | s / dream | |\n|---|---|---|")
    print(f"| library `deepdream.dream` + save | {lib:.2f} | |")
    print(f"| studio `/dream` via gradio_client (previews streamed) | {std:.2f} | **{(std / lib - 1) * 100:+.1f}%** |")
    print("all runs:", {k: [round(v, 2) for v in vs] for k, vs in times.items()})


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    main()
