"""What the studio adds to a dream: one default dream through the studio's API vs the library, one process;
and (--soak) whether a long-running studio server's memory stays bounded.

    python benchmarks/studio.py [--photo FILE] [--size 512x384] [--repeats 5]
    python benchmarks/studio.py --soak [--rounds 10] [--dreams 10] [--size 512x512]
    python benchmarks/studio.py --trim-cost [--size 384x384] [--dreams 20]

*library*: `deepdream.dream(photo, settings, backbone)` and saving the PNG with its settings.
*studio*: the same dream through the running studio: `gradio_client` uploads the photo to `/dream`
on 127.0.0.1, the job waits its turn in the device line, reports every step, keeps a preview at each
octave's end and every 1.5 s, the page's event streams each preview back as a PNG, the result is
saved in the library and sent back. Same network object, same settings and seed, interleaved runs,
medians; overhead = studio / library - 1 (target <= 10%). Wall time and the CPU time of the whole
process (every thread: dream, server, client) are both reported: on a shared machine the CPU time
is the steadier of the two, and it counts the client's work against the studio.

*--soak*: `deepdream studio` in a process of its own (one intra-op thread), two gradio_client clients
dreaming at once through `/dream` (one octave of one step, so the dreams are cheap and the bookkeeping
shows), `--rounds` rounds of `--dreams` dreams per client after a warm-up round, the same two client
sessions throughout (each new session costs ~0.3 MB, up to studio.app.SESSIONS); after each round the
server idles a second and its resident memory (VmRSS) is read. Prints the series, the growth after
warm-up and its least-squares slope per 100 dreams. Set PYTHONPATH to another checkout's src/ to
measure that version's server.

*--trim-cost*: what the studio's heap trim after each job costs: `--dreams` one-step dreams in this
process with and without `jobs.heap_trimmer()` after each, interleaved twice, one thread.
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
    parser.add_argument("--soak", action="store_true", help="measure the server's memory over many dreams")
    parser.add_argument("--rounds", type=int, default=10, help="--soak: rounds after the warm-up")
    parser.add_argument("--dreams", type=int, default=10, help="--soak: dreams per client per round")
    parser.add_argument("--trim-cost", action="store_true", help="CPU time of the heap trim after each job")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.soak:
        return soak_main(args, size)
    if args.trim_cost:
        return trim_cost_main(args, size)

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
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - began)
            cpu[name].append(time.process_time() - began_cpu)
    app.close()

    print(
        f"{size[0]}x{size[1]} photo, default settings (4 octaves x 10 steps, {settings.model}), "
        f"{torch_threads()} threads, medians of {args.repeats}"
    )
    print("| path | wall s / dream | CPU s / dream |\n|---|---|---|")
    med = {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in runs}
    print(f"| library `deepdream.dream` + save | {med['library'][0]:.2f} | {med['library'][1]:.2f} |")
    w, c = (med["studio"][i] / med["library"][i] - 1 for i in (0, 1))
    print(
        f"| studio `/dream` via gradio_client, previews streamed | {med['studio'][0]:.2f} ({w * 100:+.1f}%) "
        f"| {med['studio'][1]:.2f} (**{c * 100:+.1f}%**) |"
    )
    print("wall:", {k: [round(v, 2) for v in vs] for k, vs in wall.items()})
    print("cpu:", {k: [round(v, 2) for v in vs] for k, vs in cpu.items()})


def soak_main(args: argparse.Namespace, size: tuple[int, int]) -> None:
    from test_soak import SOAK_SETTINGS, connect, rss_mb, soak, start_studio, stop_studio

    folder = Path(tempfile.mkdtemp(prefix="studio-soak-"))
    photo = photo_file(args.photo, size, folder)
    proc, url = start_studio(folder / "library", folder / "runs")
    series: list[float] = []
    wall = 0.0
    try:
        clients = connect(url, folder)  # the same two sessions throughout: the figure is per dream
        soak(clients, photo, args.dreams, SOAK_SETTINGS)  # warm-up: network loaded, pools and caches filled
        for round_ in range(args.rounds + 1):
            if round_:
                wall += soak(clients, photo, args.dreams, SOAK_SETTINGS)
            time.sleep(1.0)  # idle: the figure is what the server keeps, not a dream's working memory
            series.append(rss_mb(proc.pid))
            cache = folder_mb(folder / "library" / "cache")
            print(
                f"after {2 * args.dreams * round_:4d} dreams (+ warm-up): server RSS {series[-1]:.0f} MB, "
                f"Gradio cache {cache:.1f} MB",
                flush=True,
            )
        cpu = cpu_seconds(proc.pid)
    finally:
        stop_studio(proc)
    dreams = [2 * args.dreams * r for r in range(len(series))]
    mean_x, mean_y = statistics.fmean(dreams), statistics.fmean(series)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(dreams, series)) / sum((x - mean_x) ** 2 for x in dreams)
    print(
        f"{size[0]}x{size[1]} photo, {SOAK_SETTINGS}, 2 clients x {args.dreams} dreams x {args.rounds} rounds "
        f"after a warm-up round; {dreams[-1]} dreams in {wall:.0f} s wall, server CPU {cpu:.0f} s"
    )
    print(
        f"server RSS after warm-up {series[0]:.0f} MB, at the end {series[-1]:.0f} MB "
        f"(growth {series[-1] - series[0]:+.0f} MB, max {max(series):.0f} MB); "
        f"slope {slope * 100:+.1f} MB per 100 dreams"
    )


def trim_cost_main(args: argparse.Namespace, size: tuple[int, int]) -> None:
    import torch

    import deepdream
    from deepdream.studio.jobs import heap_trimmer
    from test_soak import SOAK_SETTINGS

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="studio-trim-"))
    photo = photo_file(args.photo, size, folder)
    settings = deepdream.Settings(**SOAK_SETTINGS)
    backbone = deepdream.load_backbone(settings.model, device="cpu")
    trim = heap_trimmer()
    deepdream.dream(photo, settings=settings, backbone=backbone)  # warm-up
    print(f"{size[0]}x{size[1]} photo, {SOAK_SETTINGS}, {args.dreams} dreams per run, 1 thread")
    print("| after each dream | wall s / dream | CPU s / dream | trim s / dream |\n|---|---|---|---|")
    for trimmed in (False, True, False, True):
        wall, cpu, trimming = time.perf_counter(), time.process_time(), 0.0
        for _ in range(args.dreams):
            deepdream.dream(photo, settings=settings, backbone=backbone)
            if trimmed:
                began = time.perf_counter()
                trim()
                trimming += time.perf_counter() - began
        n = args.dreams
        print(
            f"| {'heap trim' if trimmed else 'nothing'} | {(time.perf_counter() - wall) / n:.3f} "
            f"| {(time.process_time() - cpu) / n:.3f} | {trimming / n:.4f} |"
        )


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1024**2 if folder.exists() else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    main()
