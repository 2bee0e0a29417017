"""The Explore tab: a layer sweep of the Dream tab's photo, or a channel atlas of one layer, with the
Dream tab's model and settings. The work is `Studio.sweep` / `Studio.atlas`."""

from __future__ import annotations

import logging

import gradio as gr

from ..errors import DeepDreamError
from . import form
from .dreamtab import DreamTab, form_inputs, form_settings, gallery_items, progress_html, watch_to_end
from .service import Studio

log = logging.getLogger(__name__)


def build(studio: Studio, dream: DreamTab) -> None:
    c = dream.controls
    gr.Markdown(
        "Uses the photo, model and settings of the Dream tab. A sweep dreams the photo at each chosen "
        "layer (none chosen: the recommended ones); an atlas grows one picture per channel from nothing."
    )
    with gr.Row():
        with gr.Column(scale=1):
            kind = gr.Radio(["layer sweep", "channel atlas"], value="layer sweep", label="Sheet", elem_id="sheet-kind")
            names = [x.name for x in studio.backbones.layers(studio.defaults)]
            layer = gr.Dropdown(
                choices=names,
                allow_custom_value=True,
                label="Atlas layer (name or index)",
                value=studio.backbones.get(studio.defaults).recommended_layers[0],
                elem_id="atlas-layer",
            )
            channels = gr.Textbox(value="0-7", label="Atlas channels", elem_id="atlas-channels")
            tile = gr.Slider(32, 256, step=16, value=96, label="Atlas tile size (px)", elem_id="atlas-tile")
            with gr.Row():
                go = gr.Button("Make sheet", variant="primary", elem_id="explore-go")
                cancel = gr.Button("Cancel", variant="stop", elem_id="explore-cancel")
        with gr.Column(scale=2):
            sheet = gr.Image(
                label="Sheet",
                type="filepath",
                format="png",
                interactive=False,
                elem_id="sheet",
                buttons=["download", "fullscreen"],
                height=420,
            )
            status = gr.HTML(progress_html(None, ""), elem_id="explore-status")

    def run(data: dict, request: gr.Request):
        owner = request.session_hash if request else ""
        try:
            settings = form_settings(data, c, dream.base)
            if data[kind] == "layer sweep":
                if not data[dream.photo]:
                    raise DeepDreamError("upload a photo in the Dream tab first")
                job = studio.sweep(settings, data[dream.photo], data[c["layers"]] or None, owner=owner)
            else:
                job = studio.atlas(
                    settings, str(data[layer]), form.channel_list(data[channels]), int(data[tile]), owner=owner
                )
        except DeepDreamError as exc:
            log.info("sheet refused: %s", exc)
            yield {status: progress_html(None, f"error: {exc}")}
            return
        yield from watch_to_end(job, sheet, status)
        if job.result is None:
            return
        yield {
            sheet: str(job.result),
            status: progress_html(None, f"saved {job.result.name}"),
            dream.gallery: gallery_items(studio),
        }

    inputs = {*form_inputs(c, dream.base), dream.photo, kind, layer, channels, tile}
    go.click(
        run,
        inputs,
        [sheet, status, dream.gallery],
        show_progress="hidden",
        concurrency_limit=None,
        api_visibility="private",
    )

    def stop(request: gr.Request) -> None:
        studio.jobs.cancel(owner=request.session_hash, kind="explore")

    cancel.click(stop, None, None, concurrency_limit=None, api_visibility="private")
