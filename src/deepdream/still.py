"""`dream()`: one still picture from a path, a PIL image or noise, with every setting recorded in it."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from . import imagefiles
from .engine.objectives import build_objective
from .engine.octaves import Dreamer, Watch, noise_image, octave_plan
from .errors import SettingsError
from .featurevis import render
from .models.backbone import Backbone
from .models.load import backbone_from_settings, load_backbone
from .runtime import Progress, draw_seed, reporting, resolve_precision
from .settings import FOURIER_STEPS, Settings, from_mapping


def dream(
    image: str | Path | Image.Image | None = None,
    *,
    settings: Settings | None = None,
    backbone: Backbone | None = None,
    progress: bool | Progress = False,
    watch: Watch | None = None,
    **overrides,
) -> Image.Image:
    """Dream an image (path, PIL image, or None for noise) and return a PIL image.

    Settings come from `settings` with keyword overrides, e.g. `dream("cat.jpg", layers="blocks.4")`.
    The returned image's `info["deepdream"]` holds the full settings (seed included) as JSON.
    `progress` is True for a bar or any object with `update`/`set_description`; `watch` sees the
    current image after every step (see `Dreamer.dream`).
    """
    settings = from_mapping({**(settings or Settings()).to_dict(), **overrides})
    if settings.seed is None:
        settings = settings.replace(seed=draw_seed())
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)

    alpha = None
    if image is None and settings.init == "image":
        settings = settings.replace(init="noise")
    if settings.init != "image":
        rgb = noise_image(*settings.size, generator)
    elif isinstance(image, Image.Image):
        img = image.copy()
        img.thumbnail((settings.max_size, settings.max_size), Image.Resampling.LANCZOS)
        rgb, alpha = imagefiles.pil_to_tensor(img)
    else:
        rgb, alpha = imagefiles.load_image(image, settings.max_size)

    mask = None
    if settings.mask is not None:
        if settings.init == "fourier":
            raise SettingsError("a mask needs a picture to keep: it does not apply to --init fourier")
        mask = imagefiles.load_mask(settings.mask, tuple(rgb.shape[-2:]))
    backbone = backbone_from_settings(settings, backbone)
    guide = imagefiles.load_image(settings.guide, settings.max_size)[0] if settings.guide else None
    objective = build_objective(backbone, settings, guide)
    fourier = settings.init == "fourier"
    if fourier:
        steps = settings.iterations or FOURIER_STEPS
        ensemble = [load_backbone(name, device=backbone.device) for name in settings.ensemble]
    else:
        steps = octave_plan(settings, *rgb.shape[-2:], backbone.min_size).total

    def run(bar: Progress) -> torch.Tensor:
        if fourier:
            width, height = settings.size
            precision = resolve_precision(settings.precision, backbone.device, backbone.model)
            # a class is drawn with the recipe another network recognises (docs/explore.md)
            recipe = "class" if settings.target_class is not None else "feature"
            return render(backbone, objective, width=width, height=height, steps=steps, generator=generator,
                          precision=precision, progress=bar, recipe=recipe, ensemble=ensemble)
        with Dreamer(backbone, objective, settings) as dreamer:
            return dreamer.dream(rgb, generator, bar, mask=mask, watch=watch)

    with reporting(progress, steps) as bar:
        out = run(bar)
    result = imagefiles.tensor_to_pil(out, alpha)
    result.info["deepdream"] = settings.to_json()
    return result
