"""`dream()`: one still picture from a path, a PIL image or noise, with every setting recorded in it."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from . import imagefiles
from .engine.objectives import build_objective
from .engine.octaves import Dreamer, Watch, guide_of, noise_image
from .errors import SettingsError
from .featurevis import Rendering, grow
from .models.backbone import Backbone
from .models.load import backbone_from_settings, load_backbone
from .runtime import Progress, reporting, resolve_precision
from .settings import FOURIER_STEPS, FROM_NOTHING, Settings, from_mapping, seeded


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
    The returned image's `info["deepdream"]` holds the full settings (seed included) as JSON; with
    init="maco", `info["importance"]` is a grey picture of where it matters (summed gradient sizes).
    `progress` is True for a bar or any object with `update`/`set_description`; `watch` sees the
    current image after every step (see `Dreamer.dream`).
    """
    settings = seeded(from_mapping({**(settings or Settings()).to_dict(), **overrides}))
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
        if settings.init in FROM_NOTHING:
            raise SettingsError(f"a mask needs a picture to keep: it does not apply to --init {settings.init}")
        mask = imagefiles.load_mask(settings.mask, tuple(rgb.shape[-2:]))
    importance = None
    if settings.init in FROM_NOTHING:
        rendering = _fourier(settings, backbone_from_settings(settings, backbone), generator, progress)
        out, importance = rendering.image, rendering.importance
    else:
        with Dreamer.from_settings(settings, backbone) as dreamer:
            with reporting(progress, dreamer.steps_per_image(*rgb.shape[-2:])) as bar:
                out = dreamer.dream(rgb, generator, bar, mask=mask, watch=watch)
    result = imagefiles.tensor_to_pil(out, alpha)
    result.info["deepdream"] = settings.to_json()
    if importance is not None and settings.init == "maco":  # where the picture matters (cli: --plot)
        result.info["importance"] = imagefiles.tensor_to_pil(importance.expand(-1, 3, -1, -1)).convert("L")
    return result


def _fourier(
    settings: Settings, backbone: Backbone, generator: torch.Generator, progress: bool | Progress
) -> Rendering:
    """A picture from nothing (featurevis.grow) for --init fourier/maco, with its importance map."""
    objective = build_objective(backbone, settings, guide_of(settings))
    steps = settings.iterations or FOURIER_STEPS
    ensemble = [load_backbone(name, device=backbone.device) for name in settings.ensemble]
    width, height = settings.size
    precision = resolve_precision(settings.precision, backbone.device, backbone.model)
    # a class is drawn with the look another network recognises (docs/explore.md); --init maco has its own
    look = "maco" if settings.init == "maco" else "class" if settings.target_class is not None else "feature"
    with reporting(progress, steps) as bar:
        return grow(
            backbone,
            objective,
            width=width,
            height=height,
            steps=steps,
            generator=generator,
            precision=precision,
            progress=bar,
            look=look,
            ensemble=ensemble,
        )
