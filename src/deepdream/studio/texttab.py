"""The Text tab: the text that makes a language model's neuron fire (EPO), with a live frontier while it runs,
Cancel, and the result (dreams.json and its frontier figure) saved in the library's texts/ folder; the
`/text` endpoint runs the same job for gradio_client. The work is `dream_text`; this module only queues it."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from .. import imagefiles
from ..errors import DeepDreamError, SettingsError
from ..runtime import resolve_device
from .dreamtab import progress_html
from .jobs import Job, follow
from .service import Studio

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # owner/name or name: never a path of this machine
COLUMNS = ["activation", "x-entropy", "text"]


@dataclass
class TextModels:
    """Loaded language models by (name, device), kept while the studio runs: one load per model."""

    loaded: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str, device: str):
        from ..text.registry import load_language_model

        with self.lock:
            if (name, device) not in self.loaded:
                self.loaded[(name, device)] = load_language_model(name, resolve_device(device))
            return self.loaded[(name, device)]


def check_model(studio: Studio, name: str) -> None:
    """Registered models, Hugging Face ids, or a `config:` folder inside the library: a page user must not
    make the studio read other files of this machine."""
    from ..text.registry import CONFIG_PREFIX, list_language_models

    if name in list_language_models():
        return
    if name.startswith(CONFIG_PREFIX):
        studio.library.inside(name[len(CONFIG_PREFIX) :])
        return
    if not HUB_ID.match(name) or name.lower().endswith(".gguf") or Path(name).exists():
        raise SettingsError(
            f"the studio dreams with {', '.join(list_language_models())} or a Hugging Face id, not {name!r}"
        )


@dataclass
class TextJob:
    job: Job
    live: dict  # the frontier so far: rows for the table


def submit(studio: Studio, models: TextModels, values: dict, owner: str = "") -> TextJob:
    """Queue a text dream from settings values; the result is (dreams.json, frontier PNG) in texts/."""
    from ..text.dreaming import dream_text
    from ..text.settings import TextSettings

    settings = TextSettings.from_mapping({**TextSettings.defaults(), **values})
    if settings.direction is not None:
        raise SettingsError("the studio does not read direction files: use the library API or the CLI")
    check_model(studio, settings.model)
    live: dict = {"rows": []}

    def work(job: Job) -> tuple[Path, Path]:
        lm = models.get(settings.model, settings.device)

        def seen(search) -> None:
            points = sorted(search.frontier.points, key=lambda p: -p.activation)[:12]
            live["rows"] = [[round(p.activation, 3), round(p.xent, 3), lm.decode(p.tokens)] for p in points]

        result = dream_text(settings=settings, lm=lm, progress=job, on_iteration=seen)
        folder = studio.library.sub("texts")
        folder.mkdir(exist_ok=True)
        stem = re.sub(r"[^\w.-]+", "_", result.objective)[:60]
        out, plot = studio.library.new_path("texts", stem, ".json"), studio.library.new_path("texts", stem, ".png")
        body = json.dumps(result.to_dict(), indent=1, ensure_ascii=False) + "\n"
        from ..text.plot import frontier_figure

        frontier_figure(result, plot)
        imagefiles.atomic_write(out, lambda tmp: tmp.write_text(body, encoding="utf-8"))
        live["rows"] = [
            [round(p.activation, 3), round(p.xent, 3), p.text]
            for p in sorted(result.frontier, key=lambda p: -p.activation)[:12]
        ]
        return out, plot

    return TextJob(studio.jobs.submit("text", str(resolve_device(settings.device)), work, owner=owner), live)


def build(studio: Studio) -> None:
    """The tab's layout and events, and the hidden `/text` endpoint (call inside a gr.Tab)."""
    from ..text.registry import DEFAULT_MODEL, list_language_models
    from ..text.settings import TextSettings

    models = TextModels()
    gr.Markdown(
        "The text that makes one neuron of a language model fire, found by EPO: a population of texts "
        "traded off between activation and fluency. Give a start sentence to edit it instead."
    )
    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown(
                list_language_models(),
                value=DEFAULT_MODEL,
                allow_custom_value=True,
                label="Language model",
                elem_id="text-model",
            )
            layer = gr.Textbox("model.layers.15.mlp", label="Layer (MLP for neurons)", elem_id="text-layer")
            neuron = gr.Number(
                123, precision=0, minimum=0, label="Neuron (empty: the layer's energy)", elem_id="text-neuron"
            )
            target = gr.Textbox("", label="Or a target token (e.g. ' dog')", elem_id="text-target")
            start = gr.Textbox("", label="Start sentence (optional)", elem_id="text-start")
            iterations = gr.Slider(
                1, 300, step=1, value=TextSettings.iterations, label="Iterations", elem_id="text-iterations"
            )
            seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="text-seed")
            with gr.Row():
                go = gr.Button("Dream the text", variant="primary", elem_id="text-go")
                cancel = gr.Button("Cancel", variant="stop", elem_id="text-cancel")
        with gr.Column(scale=2):
            table = gr.Dataframe(headers=COLUMNS, label="Frontier (live)", interactive=False, elem_id="text-frontier")
            status = gr.HTML(progress_html(None, "choose a neuron"), elem_id="text-status")
            figure = gr.Image(
                type="filepath", label="Frontier and token-coloured texts", interactive=False, elem_id="text-figure"
            )
            saved = gr.File(label="dreams.json", interactive=False, elem_id="text-json")

    def run(model_name, layer_name, neuron_index, target_token, sentence, steps, seed_value, request: gr.Request):
        values = {"model": model_name or DEFAULT_MODEL, "iterations": int(steps), "seed": int(seed_value or 0)}
        if target_token:
            values["target_token"] = target_token
        if layer_name and layer_name.strip():
            values["layer"] = layer_name.strip()
            if neuron_index is not None:
                values["neuron"] = int(neuron_index)
        if sentence and sentence.strip():
            values["text"] = sentence
        try:
            task = submit(studio, models, values, owner=request.session_hash if request else "")
        except DeepDreamError as exc:
            yield gr.update(), progress_html(None, f"error: {exc}"), gr.update(), gr.update()
            return
        for _ in follow(task.job):
            yield task.live["rows"] or gr.update(), progress_html(task.job), gr.update(), gr.update()
        if task.job.result is None:
            yield gr.update(), progress_html(task.job), gr.update(), gr.update()
            return
        out, plot = task.job.result
        yield task.live["rows"], progress_html(None, f"saved {out.name}"), str(plot), str(out)

    go.click(
        run,
        [model, layer, neuron, target, start, iterations, seed],
        [table, status, figure, saved],
        show_progress="hidden",
        concurrency_limit=None,
        api_visibility="private",
    )

    def stop(request: gr.Request) -> None:
        studio.jobs.cancel(owner=request.session_hash, kind="text")

    cancel.click(stop, None, None, concurrency_limit=None, api_visibility="private")

    with gr.Group(visible=False):
        settings_json = gr.Textbox(label="text settings (JSON: model, layer, neuron, target_token, text, ...)")
        json_out = gr.File(label="dreams.json")
        figure_out = gr.File(label="frontier figure")
        api_status = gr.Textbox(label="status, then the best texts")
        trigger = gr.Button()

    def endpoint(text: str, request: gr.Request):
        try:
            values = json.loads(text) if text and text.strip() else {}
            if not isinstance(values, dict):
                raise SettingsError("the settings must be a JSON object")
            task = submit(studio, models, values, owner=request.session_hash if request else "")
        except (DeepDreamError, json.JSONDecodeError) as exc:
            raise gr.Error(str(exc)) from None
        for _ in follow(task.job):  # the status and the live frontier, as they change
            yield None, None, json.dumps({"status": task.job.status(), "frontier": task.live["rows"]})
        if task.job.result is None:
            raise gr.Error("cancelled" if task.job.cancelled else task.job.status())
        out, plot = task.job.result
        yield str(out), str(plot), json.dumps({"status": "done", "frontier": task.live["rows"]})

    trigger.click(
        endpoint, [settings_json], [json_out, figure_out, api_status], api_name="text", concurrency_limit=None
    )
