"""The studio's programmatic endpoints (for gradio_client), the same jobs as the page:
- `/dream`: a photo, settings as JSON, an optional mask file; streams previews, ends with the saved PNG and
  its settings;
- `/sound`: a sound file, settings and audio options as JSON; streams the status, ends with the dreamed FLAC
  and its before/after spectrogram."""

from __future__ import annotations

import json
import logging

import gradio as gr
import numpy as np

from ..audio import AudioOptions
from ..audio.dreaming import AUDIO_DEFAULTS
from ..errors import DeepDreamError
from ..settings import from_mapping
from .dreamtab import watch
from .jobs import follow
from .safety import check_image
from .service import Studio

log = logging.getLogger(__name__)


def build(studio: Studio) -> None:
    """Hidden components and the event behind `/dream` (call inside the Blocks)."""
    with gr.Group(visible=False):
        photo = gr.File(label="photo", type="filepath")
        settings_json = gr.Textbox(label="settings (JSON, over the studio's defaults)")
        mask_file = gr.File(label="mask (white = dream)", type="filepath")
        image = gr.Image(label="preview, then the result", type="filepath", format="png")
        status = gr.Textbox(label="status, then the result's settings (JSON)")
        trigger = gr.Button()

    def dream(photo_path: str | None, text: str, mask_path: str | None, request: gr.Request):
        try:
            values = json.loads(text) if text and text.strip() else {}
            settings = from_mapping({**studio.defaults.to_dict(), **values})
            mask = None
            if mask_path:
                mask = np.asarray(check_image(mask_path).convert("L"))
            job = studio.dream(settings, photo_path, mask, owner=request.session_hash if request else "")
        except (DeepDreamError, json.JSONDecodeError, TypeError) as exc:
            log.info("/dream refused: %s", exc)
            raise gr.Error(str(exc)) from None
        for update in watch(job, image, status):
            yield update.get(image, gr.Image()), job.status()
        if job.result is None:
            raise gr.Error("cancelled" if job.cancelled else job.status())
        yield str(job.result), json.dumps(studio.library.settings_of(job.result).to_dict())

    trigger.click(dream, [photo, settings_json, mask_file], [image, status], api_name="dream", concurrency_limit=None)

    with gr.Group(visible=False):
        sound_file = gr.File(label="sound", type="filepath")
        options_json = gr.Textbox(label="audio options (JSON)")
        sound_out = gr.File(label="the dreamed sound")
        figure = gr.File(label="before/after spectrogram")
        sound_status = gr.Textbox(label="status")
        sound_trigger = gr.Button()

    def sound(path: str | None, text: str, options_text: str, request: gr.Request):
        try:
            values = json.loads(text) if text and text.strip() else {}
            settings = from_mapping({**studio.defaults.to_dict(), **AUDIO_DEFAULTS, **values})
            options = AudioOptions(**(json.loads(options_text) if options_text and options_text.strip() else {}))
            if not path:
                raise DeepDreamError("no sound file")
            job = studio.sound(settings, path, options, owner=request.session_hash if request else "")
        except (DeepDreamError, json.JSONDecodeError, TypeError) as exc:
            log.info("/sound refused: %s", exc)
            raise gr.Error(str(exc)) from None
        for _ in follow(job):  # only changes go over the wire
            yield None, None, job.status()
        if job.result is None:
            raise gr.Error("cancelled" if job.cancelled else job.status())
        out, plot = job.result
        yield str(out), str(plot), "done"

    sound_trigger.click(
        sound,
        [sound_file, settings_json, options_json],
        [sound_out, figure, sound_status],
        api_name="sound",
        concurrency_limit=None,
    )
