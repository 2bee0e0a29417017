"""How fast is live dreaming? `deepdream live` on a file source played at its own rate, as a camera would be.

Writes a clip (a slow pan across a photo, or the still noisy shot, from benchmarks/flicker.py) at --fps, runs
`dream_live` on it for --duration seconds with the default settings (seed 0) and prints:

  fps          frames shown per second over the session, and after the first frame (a full dream)
  delay        seconds from a frame's arrival to its display: mean and worst after the first frame
  dropped      source frames the dreamer could not keep up with (newest frame wins)
  steps        ascent steps per frame after the first (the warm start), and of the first
  cpu s/frame  process CPU seconds per shown frame (wall times are inflated on a shared machine)
  look         activation gain at the dream layer, shown frame over its camera frame (mean, weakest, last),
               and the warp error between consecutive shown frames (0..255; both as in benchmarks/flicker.py)

    python benchmarks/live.py --threads 2                            # CPU, 320x240 (the docs/live.md row)
    python benchmarks/live.py --size 1280x720 --device cuda          # a GPU, 1280x720
    python benchmarks/live.py --steps 1 --strength 1                 # fewer, stronger steps per frame
    python benchmarks/live.py --browser --threads 2                  # the studio's Live tab in Chromium

--browser serves the studio on a loopback port and opens its Live tab in Debian's Chromium (Playwright) with a
fake camera playing the clip (a y4m file), and prints what the page itself measures: frames shown per second
and the delay from a frame's arrival at the server to its display, beside the server's own figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from deepdream.models.load import load_backbone
from deepdream.settings import Settings
from deepdream.video.flow import warp_error
from deepdream.video.jobs import FrameDreamer
from deepdream.video.live import NEW_STEPS, LiveOptions, dream_live
from flicker import gains, pan, static, write_clip

CLIPS = {"pan": pan, "static": static}


def write_y4m(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Frames as a y4m clip (I420), what Chromium's fake camera plays in a loop."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of this process and of its descendants by kind: Chromium's processes, and
    the rest (Playwright's driver), read from /proc."""
    tick, children, names = os.sysconf("SC_CLK_TCK"), {}, {}
    used = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        pid = int(stat.parent.name)
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(pid)
        names[pid], used[pid] = name, (int(fields[11]) + int(fields[12])) / tick
    out = {"server": used.get(os.getpid(), 0.0), "chromium": 0.0, "driver": 0.0}
    todo = list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        out["chromium" if "chrom" in names[pid].lower() else "driver"] += used[pid]
    return out


def browser(args, frames: list[np.ndarray]) -> None:
    """The studio's Live tab in Chromium with a fake camera; the page's own frame rate and delay."""
    from playwright.sync_api import sync_playwright

    from deepdream.studio.app import launch
    from deepdream.studio.library import Library
    from deepdream.studio.service import Studio

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        clip = Path(tmp) / "clip.y4m"
        write_y4m(clip, frames, args.fps)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ["HF_HUB_OFFLINE"] = "1"
        studio = Studio(Library(Path(tmp) / "library"), runs=None, defaults=Settings(seed=0, device=args.device))
        app, url = launch(studio, port=port)
        flags = ["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={clip}"]  # fmt: skip
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=flags)
        try:
            page = chromium.new_page()
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_role("tab", name="Live").click()
            page.locator('#live-camera [title="grant webcam access"] button').click()
            page.locator("#live-camera button.capture-button").click()
            page.locator("#live-out img").wait_for()  # the first dream (a full one) is back
            samples = []
            cpu, began = cpu_seconds(), time.monotonic()
            end = time.monotonic() + args.duration
            while time.monotonic() < end:
                time.sleep(1.0)
                meter = page.locator("#live-meter .live-meter")
                stats = page.locator("#live-out .live-stats")
                samples.append(
                    (
                        float(meter.get_attribute("data-fps")),
                        float(meter.get_attribute("data-delay")),
                        float(stats.get_attribute("data-fps")),
                        float(stats.get_attribute("data-latency")),
                    )
                )
            wall = time.monotonic() - began
            cpu = {k: v - cpu[k] for k, v in cpu_seconds().items()}
        finally:
            chromium.close()
            app.close()
    shown, delay, dreamed, per_frame = (float(np.median(column)) for column in zip(*samples))
    print(f"browser: shown {shown:.2f} fps in the page, {delay:.3f} s from arrival to display (median of "
          f"{len(samples)} one-second readings over {args.duration:g} s) | server: dreamed {dreamed:.2f} fps, "
          f"{per_frame:.3f} s per frame")  # fmt: skip
    frames_dreamed = dreamed * wall
    print(
        f"cpu over {wall:.1f} s wall (load {os.getloadavg()[0]:.2f}): "
        + ", ".join(
            f"{k} {v:.1f} s ({v / wall:.2f} cores, {v / max(frames_dreamed, 1):.3f} s a frame)" for k, v in cpu.items()
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="320x240")
    p.add_argument("--fps", type=int, default=30, help="the source's frame rate (default 30)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of live dreaming (default 20)")
    p.add_argument("--clip", choices=list(CLIPS), default="pan")
    p.add_argument("--steps", type=int, default=LiveOptions.steps, help="ascent steps per carried frame")
    p.add_argument("--strength", type=float, default=LiveOptions.strength)
    p.add_argument("--flow", default=LiveOptions.flow, help=f"optical flow (default {LiveOptions.flow})")
    p.add_argument("--new-steps", type=int, default=NEW_STEPS,
                   help=f"steps for new regions and cuts (default {NEW_STEPS}; 0: a full dream)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--browser", action="store_true", help="the studio's Live tab in Chromium instead of the CLI")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.browser:
        print(f"torch threads {torch.get_num_threads()}, device {args.device}; {width}x{height} {args.clip} "
              f"camera at {args.fps} fps; the studio's defaults (seed 0) and the Live tab's")  # fmt: skip
        return browser(args, CLIPS[args.clip](width, height, args.fps * 4))
    settings = Settings(seed=0, device=args.device)
    backbone = load_backbone("efficientnet_lite0", pretrained=True, device=args.device)
    frames = round(args.fps * (args.duration + 5))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        write_clip(clip, CLIPS[args.clip](width, height, frames), args.fps)
        shown = []  # (camera frame, dream) of each shown frame
        keep = lambda f: shown.append((f.source, f.dream))  # noqa: E731
        options = LiveOptions(duration=args.duration, steps=args.steps, strength=args.strength, flow=args.flow,
                              new_steps=args.new_steps or None, window=False, on_frame=keep)  # fmt: skip
        cpu = time.process_time()
        r = dream_live(clip, settings, options, backbone=backbone)
        cpu = time.process_time() - cpu
    later = r.latencies[1:] or [0.0]
    print(f"torch threads {torch.get_num_threads()}, device {args.device}; {width}x{height} {args.clip} clip at "
          f"{args.fps} fps, {args.duration:g} s live; default settings, seed 0; {args.steps} steps x "
          f"{args.strength}, flow {args.flow}, new regions {args.new_steps or 'full'} steps")  # fmt: skip
    print(f"fps {r.fps:.2f} over the session, {r.steady_fps:.2f} after the first frame | delay "
          f"{np.mean(later):.3f} s mean, "
          f"{max(later):.3f} s worst | dropped {r.dropped} of {r.arrived} | steps {np.mean(r.steps[1:] or [0]):.1f} "
          f"per frame, {r.steps[0] if r.steps else 0} for the first | cpu {cpu / max(r.shown, 1):.3f} s/frame, "
          f"wall {r.seconds / max(r.shown, 1):.3f} s/frame")  # fmt: skip
    sources, dreams = [s for s, _ in shown], [d for _, d in shown]
    with FrameDreamer(settings, backbone) as dreamer:
        g = gains(dreams, sources, dreamer)
    print(f"look: activation gain {np.mean(g):.2f}x mean, {min(g):.2f}x weakest frame, {g[-1]:.2f}x last | warp "
          f"error {warp_error(dreams, sources):.2f} between shown frames")  # fmt: skip


if __name__ == "__main__":
    main()
