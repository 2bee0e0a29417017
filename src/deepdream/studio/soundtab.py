"""The Sound tab: dream a sound file (or a video's soundtrack) through its spectrogram, with the Dream tab's
model and settings, and hear it beside a before/after spectrogram. The work is `Studio.sound`."""

from __future__ import annotations

import logging

import gradio as gr

from ..audio import PHASES, AudioOptions
from ..audio.dreaming import AUDIO_DEFAULTS
from ..errors import DeepDreamError
from .dreamtab import DreamTab, form_inputs, form_settings, progress_html, watch_to_end
from .service import Studio

log = logging.getLogger(__name__)


def build(studio: Studio, dream: DreamTab) -> None:
    c = dream.controls
    gr.Markdown(
        "Uses the model, layers and steps of the Dream tab. The sound's spectrogram is dreamed as a grey "
        "picture and turned back into sound at the input's rate, channels and length."
    )
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Audio(
                sources=["upload"], type="filepath", label="Sound (WAV, FLAC, OGG, MP3)", elem_id="sound-in"
            )
            phase = gr.Radio(
                list(PHASES),
                value=AudioOptions.phase,
                label="Phase",
                elem_id="sound-phase",
                info="original keeps the input's; griffinlim lets it follow the dream",
            )
            survival = gr.Slider(
                0,
                30,
                step=1,
                value=AudioOptions.survival_steps,
                label="Survival steps",
                info="last steps scored on the sound as it will be written",
                elem_id="sound-survival",
            )
            smoothing = gr.Slider(
                0, 4, step=0.5, value=AUDIO_DEFAULTS["smoothing"], label="Gradient smoothing", elem_id="sound-smoothing"
            )
            with gr.Row():
                go = gr.Button("Dream the sound", variant="primary", elem_id="sound-go")
                cancel = gr.Button("Cancel", variant="stop", elem_id="sound-cancel")
        with gr.Column(scale=2):
            result = gr.Audio(type="filepath", label="Dreamed sound", interactive=False, elem_id="sound-out")
            figure = gr.Image(
                type="filepath",
                label="Spectrogram, before and after",
                interactive=False,
                elem_id="sound-figure",
                height=360,
            )
            status = gr.HTML(progress_html(None, "upload a sound"), elem_id="sound-status")

    def run(data: dict, request: gr.Request):
        try:
            if not data[source]:
                raise DeepDreamError("upload a sound first")
            settings = form_settings(data, c, dream.base).replace(smoothing=float(data[smoothing]))
            options = AudioOptions(phase=data[phase], survival_steps=int(data[survival]))
            job = studio.sound(settings, data[source], options, owner=request.session_hash if request else "")
        except DeepDreamError as exc:
            log.info("sound refused: %s", exc)
            yield {status: progress_html(None, f"error: {exc}")}
            return
        yield from watch_to_end(job, figure, status)
        if job.result is None:
            return
        sound, plot = job.result
        yield {result: str(sound), figure: str(plot), status: progress_html(None, f"saved {sound.name}")}

    inputs = {*form_inputs(c, dream.base), source, phase, survival, smoothing}
    go.click(
        run, inputs, [result, figure, status], show_progress="hidden", concurrency_limit=None, api_visibility="private"
    )

    def stop(request: gr.Request) -> None:
        studio.jobs.cancel(owner=request.session_hash, kind="sound")

    cancel.click(stop, None, None, concurrency_limit=None, api_visibility="private")
