"""The Dream tab: photo and painted mask, every engine setting, live preview, Cancel, gallery and history.

Layout and callbacks only; the work is `Studio.dream`.
"""

from __future__ import annotations

import html
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Iterator

import gradio as gr
import numpy as np

from .. import imagefiles
from ..errors import DeepDreamError
from ..runtime import SEED_LIMIT
from ..settings import (
    DEVICE_CHOICES,
    INITS,
    OCTAVE_MODES,
    OPTIMIZER_CHOICES,
    PRECISION_CHOICES,
    PRESETS,
    Settings,
    preset,
)
from . import form
from .jobs import Job, follow
from .safety import check_image
from .service import Studio, mask_from_layers

log = logging.getLogger(__name__)

EDITOR_SIZE = 1024  # long side of the picture shown for painting; the mask is scaled to the dream


def progress_html(job: Job | None, text: str = "") -> str:
    """A progress bar (steps done, ETA) and one line of status."""
    if job is not None:
        text = job.status()
        if job.total and not job.finished.is_set() and not job.place:
            fraction = min(job.done / job.total, 1.0)
            return (
                f'<progress value="{fraction:.3f}" max="1" style="width:100%"></progress>'
                f'<div class="status-text">{html.escape(text)}</div>'
            )
    return f'<div class="status-text">{html.escape(text)}</div>'


@dataclass
class DreamTab:
    """The components other tabs and the app's load event use."""

    photo: gr.State
    base: gr.State
    controls: dict[str, gr.components.Component]
    gallery: gr.Gallery


def _controls(studio: Studio, default: Settings) -> dict[str, Any]:
    layers = studio.backbones.layers(default)
    categories = studio.backbones.get(default).categories
    c: dict[str, Any] = {}
    with gr.Accordion("Network and objective", open=True):
        c["model"] = gr.Dropdown(
            studio.backbones.choices(),
            value=default.model,
            label="Model",
            allow_custom_value=True,
            info="or type timm:NAME / torchvision:NAME",
        )
        c["layers"] = gr.Dropdown(
            [(x.label, x.name) for x in layers],
            value=form.from_settings(default)["layers"],
            multiselect=True,
            allow_custom_value=True,
            label="Layers (★ recommended; none: the first recommended)",
            elem_id="layers",
        )
        c["target_class"] = gr.Dropdown(
            list(categories), value=default.target_class, filterable=True, label="Target class", elem_id="target-class"
        )
        c["channels"] = gr.Textbox(label="Channels of the layers", placeholder="e.g. 0-7,12")
        c["guide"] = gr.File(type="filepath", label="Guide image (optional)", height=80)
        c["guide_layer"] = gr.Textbox(
            value=default.guide_layer or "", label="Guide layer (empty: the last of the layers)"
        )
    with gr.Accordion("Algorithm", open=False):
        c["preset"] = gr.Dropdown(list(PRESETS), value="default", label="Preset")
        c["octaves"] = gr.Slider(1, 8, step=1, value=default.octaves, label="Octaves", elem_id="octaves")
        c["octave_scale"] = gr.Slider(1.1, 2.0, step=0.05, value=default.octave_scale, label="Octave scale")
        c["octave_mode"] = gr.Radio(list(OCTAVE_MODES), value=default.octave_mode, label="Octave mode")
        c["octave_blend"] = gr.Slider(0, 1, step=0.05, value=default.octave_blend, label="Octave blend (blend mode)")
        c["iterations"] = gr.Slider(
            0,
            100,
            step=1,
            value=default.iterations or 0,
            label="Iterations per octave (0: 10, or 30 with a class)",
            elem_id="iterations",
        )
        c["step_size"] = gr.Number(value=default.step_size, label="Step size")
        c["optimizer"] = gr.Dropdown(list(OPTIMIZER_CHOICES), value=default.optimizer, label="Optimizer")
        c["jitter"] = gr.Slider(0, 64, step=1, value=default.jitter, label="Jitter (px)")
        c["smoothing"] = gr.Slider(0, 4, step=0.1, value=default.smoothing, label="Gradient smoothing (sigma)")
        c["precision"] = gr.Dropdown(list(PRECISION_CHOICES), value=default.precision, label="Precision")
        c["device"] = gr.Dropdown(list(DEVICE_CHOICES), value=default.device, label="Device")
    with gr.Accordion("Picture", open=False):
        c["init"] = gr.Radio(list(INITS), value=default.init, label="Start from", elem_id="init")
        with gr.Row():
            c["width"] = gr.Number(value=default.size[0], precision=0, label="Width (noise)")
            c["height"] = gr.Number(value=default.size[1], precision=0, label="Height (noise)")
        c["max_size"] = gr.Slider(64, 4096, step=16, value=default.max_size, label="Max size (long side)")
        c["tile_size"] = gr.Number(value=default.tile_size or 0, precision=0, label="Tile size (0: from free memory)")
    with gr.Row():
        c["seed"] = gr.Number(value=random.randrange(SEED_LIMIT), precision=0, label="Seed", elem_id="seed")
        c["seed_lock"] = gr.Checkbox(value=False, label="Lock seed")
        c["new_seed"] = gr.Button("New seed", size="sm")
    return c


def build(studio: Studio) -> DreamTab:
    """The tab's components and events (call inside a gr.Tab)."""
    default = studio.defaults
    photo_path = gr.State(None)
    base = gr.State(default)  # settings the controls sit on: the fields without a control ride here
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Photo: upload or drop", type="filepath", elem_id="photo", height=120)
            editor = gr.ImageEditor(
                label="Mask: paint where to dream (nothing painted: everywhere)",
                sources=(),
                type="numpy",
                layers=False,
                transforms=(),
                elem_id="mask",
                height=360,
                brush=gr.Brush(colors=["#ffffff"], default_color="#ffffff", color_mode="fixed"),
            )
            with gr.Row():
                go = gr.Button("Dream", variant="primary", elem_id="dream")
                cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
            c = _controls(studio, default)
        with gr.Column(scale=1):
            result = gr.Image(
                label="Dream",
                type="filepath",
                format="png",
                interactive=False,
                elem_id="result",
                height=420,
                buttons=["fullscreen"],
            )
            status = gr.HTML(progress_html(None, "upload a photo, or start from noise"), elem_id="status")
            download = gr.DownloadButton("Download PNG with its settings", visible=False, elem_id="download")
    gallery = gr.Gallery(
        label="Library: click a picture to dream again with its settings",
        columns=6,
        height=300,
        allow_preview=False,
        elem_id="gallery",
    )
    tab = DreamTab(photo_path, base, c, gallery)
    _events(studio, tab, upload, editor, go, cancel, result, status, download, base)
    return tab


def gallery_items(studio: Studio) -> list[tuple[str, str]]:
    """The library's pictures, newest first, captioned with their file names."""
    return [(str(p), p.name) for p in studio.library.gallery()[:120]]


def watch(job: Job, result: gr.Image, status: gr.HTML) -> Iterator[dict]:
    """Page updates while a job runs: the status line when it changes, the preview when there is a new one."""
    text = None
    for preview in follow(job):
        out: dict = {}
        if preview is not None:
            out[result] = imagefiles.tensor_to_pil(preview)
        line = progress_html(job)
        if line != text:
            out[status] = text = line
        if out:
            yield out


def watch_to_end(job: Job, result: gr.Image, status: gr.HTML) -> Iterator[dict]:
    """`watch`, then, when the job ended without a result, the line that says why (cancelled or the error)."""
    yield from watch(job, result, status)
    if job.result is None:
        yield {status: progress_html(None, "cancelled: nothing was saved" if job.cancelled else job.status())}


def form_settings(data: dict, c: dict, base: gr.State) -> Settings:
    """The Settings the Dream tab's controls describe over `base`; the seed only when it is locked."""
    values = {name: data[c[name]] for name in form.CONTROLS}
    seed = int(values["seed"]) if data[c["seed_lock"]] and values["seed"] is not None else None
    return form.to_settings(data[base], values, seed)


def form_inputs(c: dict, base: gr.State) -> set:
    """The components `form_settings` reads."""
    return {*(c[name] for name in form.CONTROLS), c["seed_lock"], base}


def _restore(c: dict, base: gr.State, settings: Settings) -> dict:
    values = form.from_settings(settings)
    return {base: settings, **{c[name]: values[name] for name in form.CONTROLS}}


def _events(studio: Studio, tab: DreamTab, upload, editor, go, cancel, result, status, download, base) -> None:
    c, gallery = tab.controls, tab.gallery
    controls = [c[name] for name in form.CONTROLS]

    def on_upload(path: str | None):
        if path is None:
            return None, None, None, progress_html(None, "upload a photo, or start from noise")
        try:
            img = check_image(path)
        except DeepDreamError as exc:
            log.info("upload refused: %s", exc)
            gr.Warning(str(exc))
            return None, None, None, progress_html(None, f"error: {exc}")
        thumb = img.convert("RGB")
        thumb.thumbnail((EDITOR_SIZE, EDITOR_SIZE))
        painting = {"background": np.asarray(thumb), "layers": [], "composite": None}
        return path, path, painting, progress_html(None, f"photo {img.width}x{img.height} ready: paint a mask or dream")

    upload.upload(on_upload, upload, [upload, tab.photo, editor, status], concurrency_limit=None)
    upload.clear(lambda: (None, None), None, [tab.photo, editor])

    def run(data: dict, request: gr.Request):
        try:
            settings = form_settings(data, c, base)
            painted = data[editor]
            mask = mask_from_layers(painted.get("layers") or []) if isinstance(painted, dict) else None
            job = studio.dream(settings, data[tab.photo], mask, owner=request.session_hash if request else "")
        except DeepDreamError as exc:
            log.info("dream refused: %s", exc)
            yield {status: progress_html(None, f"error: {exc}")}
            return
        yield from watch_to_end(job, result, status)
        if job.result is None:
            return
        path = job.result
        yield {
            result: str(path),
            status: progress_html(None, f"saved {path.name} ({time.strftime('%H:%M:%S')})"),
            gallery: gallery_items(studio),
            download: gr.DownloadButton(value=str(path), visible=True),
            c["seed"]: studio.library.settings_of(path).seed,
        }

    inputs = {*form_inputs(c, base), tab.photo, editor}
    go.click(
        run,
        inputs,
        [result, status, gallery, download, c["seed"]],
        show_progress="hidden",
        concurrency_limit=None,
        api_visibility="private",
    )

    def stop(request: gr.Request) -> None:
        studio.jobs.cancel(owner=request.session_hash, kind="dream")

    cancel.click(stop, None, None, concurrency_limit=None, api_visibility="private")
    c["new_seed"].click(lambda: random.randrange(SEED_LIMIT), None, c["seed"], api_visibility="private")

    def on_preset(name: str):
        return _restore(c, base, preset(name or "default"))

    c["preset"].input(on_preset, c["preset"], [*controls, base], api_visibility="private")

    def on_model(model: str, data_base: Settings):
        try:
            settings = form.to_settings(data_base, {**form.from_settings(data_base), "model": model}, None)
            layers = studio.backbones.layers(settings)
            categories = studio.backbones.get(settings).categories
        except DeepDreamError as exc:
            return {status: progress_html(None, f"error: {exc}")}
        return {
            c["layers"]: gr.Dropdown(choices=[(x.label, x.name) for x in layers]),
            c["target_class"]: gr.Dropdown(choices=list(categories)),
            status: progress_html(None, f"{model} loaded"),
        }

    c["model"].input(on_model, [c["model"], base], [c["layers"], c["target_class"], status], api_visibility="private")

    def on_select(evt: gr.SelectData):
        try:
            path = studio.library.inside(studio.library.sub("results") / str(evt.value["caption"]))
            settings = studio.library.settings_of(path)
        except (DeepDreamError, KeyError, TypeError) as exc:
            return {status: progress_html(None, f"error: {exc}")}
        restored = f"settings of {path.name} restored: Dream to dream again"
        return {
            **_restore(c, base, settings),
            result: str(path),
            download: gr.DownloadButton(value=str(path), visible=True),
            c["seed_lock"]: True,
            status: progress_html(None, restored),
        }

    gallery.select(
        on_select, None, [*controls, base, result, download, c["seed_lock"], status], api_visibility="private"
    )
