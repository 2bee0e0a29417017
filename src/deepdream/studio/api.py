"""The studio's programmatic endpoint `/dream` (for gradio_client): a photo, settings as JSON, an
optional mask file; streams previews, ends with the saved PNG and its settings. Same job as the page."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np

from ..errors import DeepDreamError
from ..settings import from_mapping
from .dreamtab import watch
from .safety import check_image
from .service import Studio


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
            raise gr.Error(str(exc)) from None
        for update in watch(job, image, status):
            yield update.get(image, gr.Image()), job.status()
        if job.result is None:
            raise gr.Error("cancelled" if job.cancelled else job.status())
        yield str(job.result), json.dumps(studio.library.settings_of(job.result).to_dict())

    trigger.click(dream, [photo, settings_json, mask_file], [image, status], api_name="dream", concurrency_limit=None)
