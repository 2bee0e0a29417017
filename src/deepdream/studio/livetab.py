"""The Live tab: the browser's webcam dreamed as it streams (Gradio's webcam streaming), with the layer,
strength and steps changeable while it runs, the frame rate and delay on the page, and a snapshot button.

Layout and callbacks only; the frames go through `video.live.LiveSession`, the loop of `deepdream live`.
Gradio streaming (not FastRTC): it needs no extra package and its frames arrive as arrays in the same
process; the queue keeps only the newest frame while one is dreamed (trigger_mode "always_last").
The dream goes back inside the HTML as a JPEG data URL, not as an Image output: an Image writes every frame
into Gradio's cache (37 KB a frame, 1.3 GB an hour at 10 fps) and the page then fetches it by URL.
"""

from __future__ import annotations

import base64
import html
import io
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
from PIL import Image

from ..errors import DeepDreamError
from ..settings import Settings
from ..video.live import STEPS, STRENGTH, LiveSession
from .service import Studio

STREAM_EVERY = 0.05  # seconds between webcam frames the page sends (the dreamer takes the newest)
JPEG_QUALITY = 85
IDLE = 3.0  # seconds without a frame after which a session no longer holds its device
WINDOW = 3.0  # seconds over which the frame rate and delay are averaged


@dataclass
class Session:
    """One browser's live stream: its dreamer, the last dream and settings, and recent frame times."""

    owner: str
    dreams: LiveSession
    settings: Settings
    last: np.ndarray | None = None
    seen: float = 0.0
    said_live: bool = False  # the status line was set to "live" (by the first dreamed frame)
    shown: deque = field(default_factory=lambda: deque(maxlen=200))  # (time shown, seconds spent)

    def rate(self, now: float) -> tuple[float, float]:
        """Frames per second and mean seconds per frame (receipt to reply) over the last WINDOW seconds."""
        recent = [(t, d) for t, d in self.shown if t > now - WINDOW]
        if len(recent) < 2:
            return 0.0, recent[0][1] if recent else 0.0
        span = recent[-1][0] - recent[0][0]
        return (len(recent) - 1) / span if span > 0 else 0.0, float(np.mean([d for _, d in recent]))


class Sessions:
    """Live streams by device: one at a time each; a stream that sent nothing for IDLE seconds lets go."""

    def __init__(self, studio: Studio):
        self.studio = studio
        self._lock = threading.Lock()
        self._by_device: dict[str, Session] = {}

    def get(self, owner: str, settings: Settings, steps: int, strength: float) -> Session:
        """The owner's session on the settings' device (made or updated); DeepDreamError when another holds it."""
        device = self.studio.device_of(settings)
        now = time.perf_counter()
        with self._lock:
            held = self._by_device.get(device)
            if held is not None and held.owner != owner and now - held.seen < IDLE:
                raise DeepDreamError(f"busy: another page is dreaming live on {device}; try again when it stops")
            if held is None or held.owner != owner:
                if held is not None:
                    held.dreams.close()
                backbone = self.studio.backbones.get(settings)
                held = Session(owner, LiveSession(settings, backbone, steps=steps, strength=strength), settings)
                self._by_device[device] = held
            held.seen = now
        held.dreams.update(settings, steps=steps, strength=strength)
        held.settings = held.dreams.settings
        return held

    def of(self, owner: str) -> Session | None:
        with self._lock:
            return next((s for s in self._by_device.values() if s.owner == owner), None)


def dream_html(dream: np.ndarray, stats: str = "") -> str:
    """The dream as an <img> with its JPEG inline, and the server's figures for it below: one output, so the
    page updates one component per frame."""
    buffer = io.BytesIO()
    Image.fromarray(dream).save(buffer, "JPEG", quality=JPEG_QUALITY)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="dream" src="data:image/jpeg;base64,{data}">{stats}'


def stats_html(fps: float, latency: float, steps: int, size: tuple[int, int], received: float = 0.0) -> str:
    """The server's side: frames dreamed per second, seconds per frame, and when this frame arrived (epoch ms,
    which the page's meter subtracts from the time it shows the frame)."""
    text = f"dreamed {fps:.1f} fps · {latency * 1000:.0f} ms per frame · {steps} steps · {size[0]}x{size[1]}"
    return (f'<div class="live-stats" data-fps="{fps:.3f}" data-latency="{latency:.4f}" '
            f'data-received="{received:.1f}">{html.escape(text)}</div>')  # fmt: skip


# measured in the page: frames shown per second (a new picture in the Dream image, loaded) over the last 3 s,
# and the delay from the frame's arrival at the server to its display (one clock on a loopback studio)
METER = """
const media = navigator.mediaDevices;
if (media && media.getUserMedia && !media.deepdreamWatched) {  // say on the page when the camera is refused
  const ask = media.getUserMedia.bind(media);
  media.deepdreamWatched = true;
  media.getUserMedia = async (constraints) => {
    try {
      return await ask(constraints);
    } catch (e) {
      const why = {NotAllowedError: 'the browser refused the camera: allow it for this page and reload',
                   NotFoundError: 'no camera found', NotReadableError: 'the camera is busy in another program'};
      const line = document.querySelector('#live-meter .live-camera');
      if (line) line.textContent = why[e.name] || `the camera cannot be used: ${e.message}`;
      throw e;
    }
  };
}
let last = null, shown = [], delays = [];
const meter = () => element.querySelector('.live-meter');
setInterval(() => {
  const img = document.querySelector('#live-out img');
  const now = performance.now();
  if (img && img.src && img.src !== last && img.complete && img.naturalWidth) {
    last = img.src;
    shown.push(now);
    const stats = document.querySelector('#live-out .live-stats');
    const received = stats ? parseFloat(stats.dataset.received) : 0;
    if (received > 0) delays.push([now, (Date.now() - received) / 1000]);
  }
  shown = shown.filter(t => t > now - 3000);
  delays = delays.filter(d => d[0] > now - 3000);
  const fps = shown.length > 1 ? (shown.length - 1) * 1000 / (shown[shown.length - 1] - shown[0]) : 0;
  const delay = delays.length ? delays.reduce((a, d) => a + d[1], 0) / delays.length : 0;
  const m = meter();
  const text = `shown ${fps.toFixed(1)} fps in this page · ${(delay * 1000).toFixed(0)} ms from arrival to display`;
  if (m && m.textContent !== text) {  // written only when it changes: each write costs the page a layout
    m.dataset.fps = fps.toFixed(3);
    m.dataset.delay = delay.toFixed(3);
    m.textContent = text;
  }
}, 10);
"""


def build(studio: Studio) -> None:
    base = studio.defaults.replace(mask=None, guide=None, init="image")
    layers = [layer.name for layer in studio.backbones.layers(base)]
    recommended = studio.backbones.get(base).recommended_layers
    default_layer = base.layers.split(",")[0].split(":")[0] if base.layers else (recommended or layers)[0]
    sessions = Sessions(studio)
    gr.Markdown("Your camera, dreamed as it streams with the studio's default model. The first frame gets a full "
                "dream, each next one a few steps on top of the last dream carried along the optical flow. Press "
                "the camera's record button to start.")  # fmt: skip
    with gr.Row():
        with gr.Column(scale=1):
            camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera", elem_id="live-camera",
                              webcam_options=gr.WebcamOptions(mirror=False))  # fmt: skip
            layer = gr.Dropdown(layers, value=default_layer if default_layer in layers else layers[0], label="Layer",
                                elem_id="live-layer")  # fmt: skip
            strength = gr.Slider(0.1, 2.0, value=STRENGTH, step=0.1, label="Strength", elem_id="live-strength",
                                 info="step size factor of the steps each frame gets")  # fmt: skip
            steps = gr.Slider(1, 8, value=STEPS, step=1, label="Steps per frame", elem_id="live-steps")
            snapshot = gr.Button("Snapshot to the library", elem_id="live-snapshot")
        with gr.Column(scale=1):
            # JPEG: 0.3 ms and 37 KB a 320x240 frame against PNG's 15 ms and 169 KB
            dreamed = gr.HTML(
                '<div class="status-text">the dream appears here</div>', label="Dream", elem_id="live-out"
            )
            gr.HTML('<div class="live-meter" data-fps="0" data-delay="0">shown 0.0 fps in this page</div>'
                    '<div class="live-camera"></div>', js_on_load=METER, elem_id="live-meter")  # fmt: skip
            status = gr.HTML('<div class="status-text">press the camera\'s record button</div>', elem_id="live-status")

    def on_frame(frame, layer_name, strength_value, steps_value, request: gr.Request):
        began, received = time.perf_counter(), time.time() * 1000
        if frame is None:
            return gr.skip(), gr.skip()
        owner = request.session_hash if request else ""
        try:
            settings = base.replace(layers=str(layer_name))
            session = sessions.get(owner, settings, int(steps_value), float(strength_value))
            dream, used = session.dreams(np.asarray(frame)[..., :3])
        except DeepDreamError as exc:
            held = sessions.of(owner)
            if held is not None:  # the next dreamed frame says "live" again
                held.said_live = False
            return gr.skip(), f'<div class="status-text">{html.escape(str(exc))}</div>'
        now = time.perf_counter()
        session.last = dream
        session.shown.append((now, now - began))
        fps, latency = session.rate(now)
        size = (dream.shape[1], dream.shape[0])
        # the status line only when it changes: an unchanged output still costs the page an update per frame
        status_line = gr.skip() if session.said_live else '<div class="status-text">live</div>'
        session.said_live = True
        return dream_html(dream, stats_html(fps, latency, used, size, received)), status_line

    camera.stream(on_frame, [camera, layer, strength, steps], [dreamed, status], stream_every=STREAM_EVERY,
                  concurrency_limit=None, show_progress="hidden",
                  api_visibility="private")  # fmt: skip

    def take_snapshot(request: gr.Request) -> str:
        session = sessions.of(request.session_hash if request else "")
        if session is None or session.last is None:
            return '<div class="status-text">nothing to save yet: start the camera</div>'
        image = Image.fromarray(session.last)
        image.info["deepdream"] = session.settings.to_json()
        path = studio.library.save(image, stem="live")
        return f'<div class="status-text">saved {html.escape(path.name)}</div>'

    snapshot.click(take_snapshot, None, status, concurrency_limit=None, api_visibility="private")
