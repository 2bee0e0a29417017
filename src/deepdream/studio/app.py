"""The studio page: its tabs, and serving it on this machine with only the library's files exposed."""

from __future__ import annotations

import os
from pathlib import Path

from .library import Library
from .safety import check_port
from .service import Studio

TITLE = "deepdream studio"
# page sessions (browser tabs, API clients) whose Gradio state is kept: each holds a copy of the page's
# component config (about 0.3 MB); Gradio's default of 10000 would let a long-running studio grow by GBs
SESSIONS = 200
# Gradio's cache (uploads, and a copy of every picture the page shows) is swept every hour of files older than a
# day; without it the library's cache/ grows with every dream, for ever. Video jobs keep their own copy of
# their source (uploads/), so a sweep or a restart never takes a job's input away.
CACHE_SWEEP = (3600, 86400)  # (every, older than) in seconds


class CacheFiles(set):
    """Every file Gradio copied into the cache (cache/<hash>/<name>), as one of the sets its `delete_cache`
    sweeps. Its own sets miss some copies: on a slow machine a dream's result stayed in cache/ after every
    sweep (tests/test_studio.py). The sweep still spares what Gradio keeps on purpose (`keep_in_cache`)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def __iter__(self):
        return iter([str(p) for p in self.folder.glob("*/*") if p.is_file()])

    def __isub__(self, removed):  # the sweep forgets what it deleted: the folder is the record
        return self


def build_app(studio: Studio, cache_sweep: tuple[int, int] = CACHE_SWEEP):
    """The Gradio Blocks of the studio (not launched)."""
    import gradio as gr

    from . import api, dreamtab, exploretab, livetab, soundtab, texttab, videotab

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=cache_sweep) as app:
        app.temp_file_sets.append(CacheFiles(studio.library.sub("cache")))
        gr.Markdown(f"## {TITLE}  \nlibrary: `{studio.library.folder}`")
        with gr.Tab("Dream", id="dream", elem_id="tab-dream"):
            dream = dreamtab.build(studio)
        with gr.Tab("Video and zoom", id="video", elem_id="tab-video"):
            video = videotab.build(studio, dream)
        with gr.Tab("Explore", id="explore", elem_id="tab-explore"):
            exploretab.build(studio, dream)
        with gr.Tab("Sound", id="sound", elem_id="tab-sound"):
            soundtab.build(studio, dream)
        with gr.Tab("Text", id="text", elem_id="tab-text"):
            texttab.build(studio)
        with gr.Tab("Live", id="live", elem_id="tab-live"):
            livetab.build(studio)
        api.build(studio)
        app.load(lambda: dreamtab.gallery_items(studio), None, dream.gallery, api_visibility="private")
        videotab.on_load(app, video)
    video.jobs.resume_unfinished()  # jobs a previous studio left unfinished carry on from their frames
    return app


def prepare_environment(library: Library) -> None:
    """Before Gradio is imported: its uploads go into the library, and it never phones home."""
    os.environ["GRADIO_TEMP_DIR"] = str(library.sub("cache"))
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def launch(
    studio: Studio,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    auth: tuple[str, str] | None = None,
    cache_sweep: tuple[int, int] = CACHE_SWEEP,
):
    """Start serving the studio in the background; returns (app, local URL). Block with app.block_thread().

    Only the library folder is served from disk (its job records, frame caches and log not even that).
    """
    check_port(host, port)  # one line for a busy or impossible port, before any job is queued
    prepare_environment(studio.library)
    app = build_app(studio, cache_sweep)
    app.queue(default_concurrency_limit=None)  # the studio's own job line orders the work per device
    folder = studio.library.folder
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        prevent_thread_lock=True,
        allowed_paths=[str(folder)],
        blocked_paths=[str(folder / name) for name in ("jobs", "work", "logs")],
        max_file_size=2 * 1024**3,
        quiet=True,
        show_error=False,
        footer_links=["api"],
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        state_session_capacity=SESSIONS,
    )
    return app, url
