"""What the studio does, without the page: dream, sweep, atlas, sound and video jobs on the library API,
saved to the library. The page (app.py and its tabs), the API, the tests and the benchmarks all call this;
nothing else in the studio calls the library's jobs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from .. import imagefiles
from ..audio import AudioOptions
from ..engine.octaves import octave_plan
from ..errors import DeepDreamError, OutputError, SettingsError
from ..runtime import resolve_device
from ..settings import FOURIER_STEPS, FROM_NOTHING, Settings
from ..still import dream
from .backbones import Backbones
from .jobs import Job, Jobs
from .library import Library
from .safety import check_image

log = logging.getLogger(__name__)


def mask_from_layers(layers: Sequence[np.ndarray]) -> np.ndarray | None:
    """A painted mask (white = dream) from the editor's RGBA layers: their strongest alpha; None if blank."""
    alphas = [
        np.asarray(layer)[..., 3]
        for layer in layers
        if layer is not None and np.asarray(layer).ndim == 3 and np.asarray(layer).shape[-1] == 4
    ]
    if not alphas:
        return None
    mask = np.max(np.stack(alphas), axis=0).astype(np.uint8)
    return mask if mask.any() else None


class Studio:
    """The library folder, the job line per device, and the loaded networks."""

    def __init__(self, library: Library, runs: str | Path | None = "runs", defaults: Settings | None = None):
        self.library = library
        self.defaults = defaults or Settings()  # what the page's controls start at
        self.jobs = Jobs()
        self.backbones = Backbones(runs)

    def device_of(self, settings: Settings) -> str:
        return str(resolve_device(settings.device))

    def check_files(self, settings: Settings) -> None:
        """Files named in settings must be the library's (or, for networks, under runs/): a page or API
        user must not make the studio read any file of this machine. Guide images are checked uploads."""
        roots = [self.library.folder] + ([self.backbones.runs.resolve()] if self.backbones.runs else [])
        for name in ("guide", "mask", "weights", "checkpoint"):
            path = getattr(settings, name)
            if path is None:
                continue
            allowed = roots if name in ("weights", "checkpoint") else roots[:1]
            if not any(Path(path).resolve().is_relative_to(root) for root in allowed):
                raise OutputError(
                    f"the {name} file {Path(path).name} is not in the studio library"
                    + (" or the runs folder" if len(allowed) > 1 else "")
                )
            if name == "guide":
                check_image(path)

    def dream(
        self, settings: Settings, photo: str | Path | None, mask: np.ndarray | None = None, *, owner: str = ""
    ) -> Job:
        """Queue a dream of `photo` (None: from noise); the job's result is the saved PNG's path."""
        self.check_files(settings.replace(mask=None))
        if settings.init == "image":
            if photo is None:
                raise SettingsError("upload a photo, or start from noise")
            size = imagefiles.fit_size(*check_image(photo).size, settings.max_size)
            if mask is not None:
                settings = settings.replace(mask=str(self.library.save_mask(mask)))
        else:
            photo, size = None, settings.size
        if settings.init != "image" or mask is None:
            settings = settings.replace(mask=None)

        def work(job: Job) -> Path:
            backbone = self.backbones.get(settings)
            if settings.init in FROM_NOTHING:
                job.total = settings.iterations or FOURIER_STEPS
            else:
                plan = octave_plan(settings, size[1], size[0], backbone.min_size)
                job.total, job.steps_per_octave = plan.total, plan.steps
            image = dream(photo, settings=settings, backbone=backbone, progress=job, watch=job.watch)
            return self.library.save(image, f"{backbone.name}-{image_seed(image)}")

        job = self.jobs.submit("dream", self.device_of(settings), work, owner=owner)
        log.debug("job %s: dream of %s with %s", job.id, Path(photo).name if photo else "noise", settings.to_json())
        return job

    def sweep(
        self, settings: Settings, photo: str | Path, layers: Sequence[str] | None = None, *, owner: str = ""
    ) -> Job:
        """Queue a layer sweep sheet of `photo` at `layers` (None: the network's recommended ones); the
        result is the saved sheet's path."""
        from ..explore import layer_sweep, sweep_layers

        image = check_image(photo)
        self.check_files(settings.replace(mask=None))
        settings = settings.replace(layers=None, mask=None)  # the sweep sets the layer of each tile

        def work(job: Job) -> Path:
            backbone = self.backbones.get(settings)
            names = sweep_layers(backbone, list(layers) if layers else None)
            w, h = imagefiles.fit_size(*image.size, settings.max_size)
            job.total = octave_plan(settings, h, w, backbone.min_size).total * len(names)
            sheet = layer_sweep(image, backbone, settings, names, with_input=True, progress=job)
            return self.library.save(sheet, f"sweep-{backbone.name}")

        return self.jobs.submit("explore", self.device_of(settings), work, owner=owner)

    def atlas(self, settings: Settings, layer: str, channels: Sequence[int], tile_size: int, *, owner: str = "") -> Job:
        """Queue a channel atlas of one layer; the result is the saved sheet's path."""
        from ..explore import channel_atlas

        self.check_files(settings.replace(mask=None))

        def work(job: Job) -> Path:
            backbone = self.backbones.get(settings)
            job.total = (settings.iterations or FOURIER_STEPS) * len(channels)
            sheet = channel_atlas(backbone, layer, list(channels), settings.replace(mask=None), tile_size, progress=job)
            return self.library.save(sheet, f"atlas-{backbone.name}")

        return self.jobs.submit("explore", self.device_of(settings), work, owner=owner)

    def sound(
        self, settings: Settings, source: str | Path, options: AudioOptions | None = None, *, owner: str = ""
    ) -> Job:
        """Queue a dream of a sound file (or a video's soundtrack); the result is (the FLAC, its before/after
        spectrogram PNG), both in the library's sounds/."""
        from ..audio import dream_audio

        self.check_files(settings.replace(mask=None))
        source = self.library.inside(source)
        settings = settings.replace(init="image", mask=None)

        def work(job: Job) -> tuple[Path, Path]:
            backbone = self.backbones.get(settings)
            stem = f"{Path(source).stem}-{backbone.name}"
            out, plot = self.library.new_path("sounds", stem, ".flac"), self.library.new_path("sounds", stem, ".png")
            try:
                dream_audio(source, out, settings=settings, options=options, backbone=backbone, progress=job, plot=plot)
            except DeepDreamError as exc:  # the page names the upload, not where the library keeps it
                raise type(exc)(str(exc).replace(str(source), source.name)) from None
            return out, plot

        return self.jobs.submit("sound", self.device_of(settings), work, owner=owner)

    def video(
        self,
        kind: str,
        source: str | Path | None,
        output: str | Path,
        settings: Settings,
        params: dict,
        *,
        job_id: str,
        on_state: Callable[[str, str], None] | None = None,
    ) -> Job:
        """Queue a resumable video job: kind 'video' dreams the clip `source`, 'zoom' makes a zoom loop from
        the still `source` (None: from noise); `params` are the keyword arguments of `dream_video` /
        `dream_zoom`. Frames are cached in work/<job_id>, so the same job queued again after a restart skips
        those already dreamed. `on_state(state, message)` hears 'running', then 'done', 'cancelled' or
        'failed'. The result is the video's path."""
        if kind not in VIDEO_KINDS:
            raise SettingsError(f"unknown video job kind {kind!r} (expected {' or '.join(VIDEO_KINDS)})")
        tell = on_state or (lambda state, message: None)

        def work(job: Job) -> Path:
            tell("running", "")
            try:
                result = VIDEO_KINDS[kind](
                    job,
                    source,
                    output,
                    settings,
                    params,
                    work_dir=self.library.sub("work") / job_id,
                    resume=True,
                    force=True,
                    backbone=self.backbones.get(settings),
                    on_frame=frame_counter(job),
                )
            except BaseException as exc:
                tell("cancelled" if job.stop.is_set() else "failed", str(exc))
                raise
            tell("done", f"{result.frames} frames, {result.dreamed} dreamed now")
            return result.path

        return self.jobs.submit("video", self.device_of(settings), work, job_id=job_id)


def frame_counter(job: Job) -> Callable[[int], None]:
    """A video job's `on_frame`: frames done so far, and the place where Cancel stops it."""

    def on_frame(index: int) -> None:
        job.update(0)  # raises Cancelled when asked to stop
        job.done = index + 1

    return on_frame


def _video_frames(job: Job, source, output, settings: Settings, params: dict, **common):
    from ..video import dream_video
    from ..video.reading import probe

    info = probe(source)
    job.total = info.frames or round((info.duration or 0) * float(info.fps)) or 0
    job.desc = "dreaming frames"
    return dream_video(source, output, settings, **params, **common)


def _zoom_frames(job: Job, source, output, settings: Settings, params: dict, **common):
    from ..video import dream_zoom

    job.total = params["frames"]
    job.desc = "dreaming frames"
    return dream_zoom(source, output, settings, **params, **common)


VIDEO_KINDS = {"video": _video_frames, "zoom": _zoom_frames}  # background job kind -> how its frames are made


def image_seed(image: Image.Image) -> str:
    import json

    try:
        return str(json.loads(image.info["deepdream"])["deepdream"]["seed"])
    except (KeyError, ValueError, TypeError):
        return "x"
