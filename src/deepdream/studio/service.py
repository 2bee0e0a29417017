"""What the studio does, without the page: dream, sweep and atlas jobs on the library API, saved to
the library. The page (app.py and its tabs), the API tests and the benchmark all call this."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .. import imagefiles
from ..audio import AudioOptions
from ..engine.octaves import octave_plan
from ..errors import DeepDreamError, OutputError, SettingsError
from ..runtime import resolve_device
from ..settings import FOURIER_STEPS, Settings
from ..still import dream
from .backbones import Backbones
from .jobs import Job, Jobs
from .library import Library
from .safety import check_image


def mask_from_layers(layers: Sequence[np.ndarray]) -> np.ndarray | None:
    """A painted mask (white = dream) from the editor's RGBA layers: their strongest alpha; None if blank."""
    alphas = [np.asarray(layer)[..., 3] for layer in layers if layer is not None and np.asarray(layer).ndim == 3
              and np.asarray(layer).shape[-1] == 4]
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
                raise OutputError(f"the {name} file {Path(path).name} is not in the studio library"
                                  + (" or the runs folder" if len(allowed) > 1 else ""))
            if name == "guide":
                check_image(path)

    def dream(self, settings: Settings, photo: str | Path | None, mask: np.ndarray | None = None, *,
              owner: str = "") -> Job:
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
            if settings.init == "fourier":
                job.total = settings.iterations or FOURIER_STEPS
            else:
                plan = octave_plan(settings, size[1], size[0], backbone.min_size)
                job.total, job.steps_per_octave = plan.total, plan.steps
            image = dream(photo, settings=settings, backbone=backbone, progress=job, watch=job.watch)
            return self.library.save(image, f"{backbone.name}-{image_seed(image)}")

        return self.jobs.submit("dream", self.device_of(settings), work, owner=owner)

    def sweep(self, settings: Settings, photo: str | Path, layers: Sequence[str], *, owner: str = "") -> Job:
        """Queue a layer sweep sheet of `photo`; the result is the saved sheet's path."""
        from ..explore import layer_sweep

        image = check_image(photo)
        self.check_files(settings.replace(mask=None))

        def work(job: Job) -> Path:
            backbone = self.backbones.get(settings)
            w, h = imagefiles.fit_size(*image.size, settings.max_size)
            job.total = octave_plan(settings, h, w, backbone.min_size).total * len(layers)
            sheet = layer_sweep(image, backbone, settings.replace(mask=None), list(layers), with_input=True,
                                progress=job)
            return self.library.save(sheet, f"sweep-{backbone.name}")

        return self.jobs.submit("explore", self.device_of(settings), work, owner=owner)

    def atlas(self, settings: Settings, layer: str, channels: Sequence[int], tile_size: int, *,
              owner: str = "") -> Job:
        """Queue a channel atlas of one layer; the result is the saved sheet's path."""
        from ..explore import channel_atlas

        self.check_files(settings.replace(mask=None))

        def work(job: Job) -> Path:
            backbone = self.backbones.get(settings)
            job.total = (settings.iterations or FOURIER_STEPS) * len(channels)
            sheet = channel_atlas(backbone, layer, list(channels), settings.replace(mask=None), tile_size, progress=job)
            return self.library.save(sheet, f"atlas-{backbone.name}")

        return self.jobs.submit("explore", self.device_of(settings), work, owner=owner)


    def sound(self, settings: Settings, source: str | Path, options: AudioOptions | None = None, *,
              owner: str = "") -> Job:
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
                dream_audio(source, out, settings=settings, options=options, backbone=backbone, progress=job,
                            plot=plot)
            except DeepDreamError as exc:  # the page names the upload, not where the library keeps it
                raise type(exc)(str(exc).replace(str(source), source.name)) from None
            return out, plot

        return self.jobs.submit("sound", self.device_of(settings), work, owner=owner)


def image_seed(image: Image.Image) -> str:
    import json

    try:
        return str(json.loads(image.info["deepdream"])["deepdream"]["seed"])
    except (KeyError, ValueError, TypeError):
        return "x"
