"""The Video and zoom tab: a clip dreamed frame by frame, or a zoom loop from a still (or noise), as
background jobs whose progress the page polls, so a reload (or a restart) loses nothing."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..errors import DeepDreamError
from ..video.flow import FLOWS
from .background import VideoJobs
from .dreamtab import DreamTab, form_inputs, form_settings, progress_html
from .safety import check_image, check_video
from .service import Studio

REFRESH = 1.0  # seconds between status refreshes of the job table


@dataclass
class VideoTab:
    jobs: VideoJobs
    table: gr.HTML
    player: gr.Video
    timer: gr.Timer


def job_table(jobs: VideoJobs) -> str:
    """Every background job: kind, state, frames, ETA (live ones from the job line)."""
    rows = []
    for record in jobs.records()[:20]:
        live = jobs.studio.jobs.get(record["id"])
        state = live.status() if live is not None and not live.finished.is_set() else record["state"]
        frames = f"{live.done}/{live.total or '?'}" if live is not None else ""
        message = record.get("message", "")
        rows.append(
            f"<tr><td>{html.escape(record['id'])}</td><td>{html.escape(state)}</td><td>{frames}</td>"
            f"<td>{html.escape(message)}</td></tr>"
        )
    if not rows:
        return "<p>no video jobs yet</p>"
    return (
        '<table id="video-jobs"><tr><th>job</th><th>state</th><th>frames</th><th></th></tr>'
        + "".join(rows)
        + "</table>"
    )


def latest_video(jobs: VideoJobs) -> str | None:
    for record in jobs.records():
        if record["state"] == "done" and Path(record["output"]).is_file():
            return record["output"]
    return None


def build(studio: Studio, dream: DreamTab) -> VideoTab:
    jobs = VideoJobs(studio)
    c = dream.controls
    gr.Markdown(
        "A clip is dreamed frame by frame (optical-flow coherence, audio kept); a photo, or nothing, "
        "makes a zoom loop. Model and settings come from the Dream tab. Jobs run in the background: "
        "reload the page or restart the studio, they carry on from their saved frames."
    )
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.File(
                label="Clip, or a still for a zoom loop (none: zoom from noise)",
                type="filepath",
                elem_id="video-source",
                height=120,
            )
            note = gr.HTML("", elem_id="video-note")
            frames = gr.Slider(2, 600, step=1, value=48, label="Zoom frames", elem_id="zoom-frames")
            zoom = gr.Slider(1.0, 1.2, step=0.005, value=1.04, label="Zoom per frame")
            flow = gr.Radio(list(FLOWS), value="dis", label="Optical flow (clips)")
            size = gr.Slider(64, 1920, step=16, value=512, label="Clip max size (long side)")
            with gr.Row():
                go = gr.Button("Start job", variant="primary", elem_id="video-go")
                stop = gr.Button("Cancel newest", variant="stop", elem_id="video-cancel")
        with gr.Column(scale=1):
            player = gr.Video(label="Newest finished video", interactive=False, elem_id="video-player")
            table = gr.HTML(job_table(jobs), elem_id="video-table")
    timer = gr.Timer(REFRESH)

    def on_source(path: str | None):
        if path is None:
            return None, ""
        try:
            info = check_video(path)
            return path, f"clip {info.width}x{info.height}, {info.fps} fps: Start dreams it"
        except DeepDreamError as clip_error:
            try:
                img = check_image(path)
                return path, f"still {img.width}x{img.height}: Start makes a zoom loop"
            except DeepDreamError:
                gr.Warning(str(clip_error))
                return None, f"error: {html.escape(str(clip_error))}"

    source.upload(on_source, source, [source, note], concurrency_limit=None, api_visibility="private")

    def start(data: dict):
        path = data[source]
        try:
            settings = form_settings(data, c, dream.base).replace(mask=None)
            is_clip = path is not None and _is_clip(path)
            if is_clip:
                jobs.start("video", path, settings, {"flow": data[flow], "max_side": int(data[size])})
            else:
                jobs.start(
                    "zoom",
                    path,
                    settings.replace(init="image" if path else "noise"),
                    {"frames": int(data[frames]), "zoom": float(data[zoom])},
                )
        except DeepDreamError as exc:
            return progress_html(None, f"error: {exc}"), job_table(jobs)
        return "", job_table(jobs)

    inputs = {*form_inputs(c, dream.base), source, frames, zoom, flow, size}
    go.click(start, inputs, [note, table], concurrency_limit=None, api_visibility="private")

    def cancel_newest():
        for record in jobs.records():
            if record["state"] in ("queued", "running"):
                jobs.cancel(record["id"])
                break
        return job_table(jobs)

    stop.click(cancel_newest, None, table, concurrency_limit=None, api_visibility="private")
    return VideoTab(jobs, table, player, timer)


def _is_clip(path: str) -> bool:
    try:
        check_video(path)
        return True
    except DeepDreamError:
        return False


def on_load(app: gr.Blocks, tab: VideoTab) -> None:
    """Refresh the job table every REFRESH s and at page load; show the newest video when it changes."""
    shown: dict[str, str | None] = {}

    def refresh(request: gr.Request):
        newest = latest_video(tab.jobs)
        key = request.session_hash if request else ""
        video = gr.Video(value=newest) if shown.get(key, "") != newest else gr.Video()
        shown[key] = newest
        return job_table(tab.jobs), video

    tab.timer.tick(
        refresh, None, [tab.table, tab.player], show_progress="hidden", concurrency_limit=None, api_visibility="private"
    )
    app.load(refresh, None, [tab.table, tab.player], api_visibility="private")
