"""The octave pyramid around the ascent loop: `Dreamer` dreams tensors with one loaded network."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .. import imagefiles
from ..errors import SettingsError
from ..models.backbone import Backbone
from ..models.load import backbone_from_settings
from ..runtime import Progress, check_memory, resolve_precision
from ..settings import Settings
from .ascent import ascend, gradient, scorer
from .filters import GaussianBlur
from .folding import fold_batchnorm
from .objectives import Objective, build_objective
from .taps import Taps
from .tiling import auto_tile_size, bytes_per_pixel, layer_strides, margin_for, memory_budget, tiled_gradient


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of B x C x H x W to (H, W), antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)


# f(image) -> None, called after every ascent step with the octave's current image (1 x 3 x h x w, changed in
# place by the next step: copy what you keep); how front ends show a live preview
Watch = Callable[[torch.Tensor], None]


def fit_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A mask (H x W or 1 x 1 x H x W, 1 = dream, 0 = keep) as 1 x 1 x h x w in [0, 1] at `size` (h, w)."""
    mask = mask.float().reshape(1, 1, *mask.shape[-2:])
    if tuple(mask.shape[-2:]) != tuple(size):
        mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False, antialias=True)
    return mask.clamp(0, 1)


def octave_sizes(height: int, width: int, octaves: int, scale: float, min_size: int) -> list[tuple[int, int]]:
    """Sizes from smallest to full; octaves that would go below min_size are dropped."""
    sizes = []
    for i in range(octaves):
        s = scale**-i
        h, w = round(height * s), round(width * s)
        if min(h, w) < min_size and sizes:
            break
        sizes.append((max(h, 1), max(w, 1)))
    return sizes[::-1]


# Small pictures: how these were tuned (benchmarks/sizes.py) is told in docs/tuning.md.
# below this short side a picture gets proportionally more steps and a shorter jitter roll (see octave_plan)
SMALL_SIDE = 320
# the largest jitter roll as a share of an octave's short side: a longer roll wraps the seam across the subject
MAX_ROLL = 0.25
# a small picture's roll share: its few small octaves would carry a longer roll's seam through most positions
SMALL_ROLL = 0.125
# steps grow as (SMALL_SIDE / short side) ** SMALL_POWER ...
SMALL_POWER = 3.0
# ... up to this factor: below ~80 px a side more steps cost seconds and gain little
MAX_BOOST = 16.0


def working_size(height: int, width: int, min_size: int) -> tuple[int, int]:
    """The (h, w) a picture is dreamed at: its own, or, with a side below the network's `min_size` (a 1x1, a
    panorama strip), a copy scaled up until the short side is `min_size`. The copy keeps the aspect ratio
    while its long side stays within what a SMALL_SIDE square holds; a thinner strip is stretched across
    instead, never shrunk along (the dream is brought back to the picture's own size afterwards)."""
    short = min(height, width)
    if short >= min_size:
        return height, width
    factor = min_size / short
    longest = max(height, width, SMALL_SIDE**2 // min_size)
    return tuple(max(min_size, min(round(side * factor), longest)) for side in (height, width))


@dataclass(frozen=True)
class OctavePlan:
    """How one image is dreamed: octave sizes (smallest first), ascent steps per octave, and the largest jitter
    roll as a share of each octave's short side."""

    sizes: list[tuple[int, int]]
    steps: int
    roll: float = MAX_ROLL

    @property
    def total(self) -> int:
        return self.steps * len(self.sizes)


def octave_plan(settings: Settings, height: int, width: int, min_size: int) -> OctavePlan:
    """The octave sizes for an image, the ascent steps per octave and the jitter roll.

    Sizes are those of the working copy (`working_size`) for a picture below the network's minimum.
    A small picture loses octaves (they would fall below the network's minimum), and the few it keeps
    hold few feature positions: with 10 steps on 1-2 octaves a 64 px photo gained 1.1-1.3x where a
    500 px one gains 3x. So with the default iteration count (settings.iterations None) the steps of the
    requested octaves are spread over the octaves kept, times (SMALL_SIDE / the short side) ** SMALL_POWER
    (at most MAX_BOOST); an explicit --iterations is taken as given. Below SMALL_SIDE the roll is capped
    at SMALL_ROLL of a side; from SMALL_SIDE up, nothing changes.
    """
    height, width = working_size(height, width, min_size)
    sizes = octave_sizes(height, width, settings.octaves, settings.octave_scale, min_size)
    short = min(height, width)
    steps = settings.steps
    if settings.iterations is None:
        boost = min(MAX_BOOST, max(1.0, SMALL_SIDE / short) ** SMALL_POWER)
        steps = math.ceil(steps * settings.octaves * boost / len(sizes) - 1e-9)
    return OctavePlan(sizes, steps, SMALL_ROLL if short < SMALL_SIDE else MAX_ROLL)


@dataclass
class Dreamer:
    """A loaded backbone with its objective and settings: dream any number of images with one load."""

    backbone: Backbone
    objective: Objective
    settings: Settings

    @classmethod
    def from_settings(
        cls, settings: Settings, backbone: Backbone | None = None, guide: torch.Tensor | None = None
    ) -> "Dreamer":
        """The one pipeline of every job: the settings' backbone (unless one is given, e.g. a video's, loaded
        once), their guide picture (unless `guide` gives it, 1 x 3 x H x W), their objective, a Dreamer."""
        backbone = backbone_from_settings(settings, backbone)
        return cls(backbone, build_objective(backbone, settings, guide_of(settings, guide)), settings)

    def __post_init__(self) -> None:
        s = self.settings
        self.device = self.backbone.device
        self.precision = resolve_precision(s.precision, self.device, self.backbone.model)
        # tapped convolutions stay unfolded so their activations are unchanged
        self.model = fold_batchnorm(self.backbone.model, keep=self.objective.layers)
        self.taps = Taps(self.model, self.objective.layers)
        self.score = scorer(self.backbone, self.taps, self.objective, self.precision)
        self.tile = self.margin = None
        if self.objective.spatial:
            self.strides = layer_strides(self.taps, self.device)
            self.margin = margin_for(self.strides)
            self.bytes_per_px = bytes_per_pixel(self.taps, self.device)
        self.smooth = GaussianBlur(s.smoothing) if s.smoothing > 0 else None
        self.blend_blur = GaussianBlur(s.blend_blur, "replicate") if s.blend_blur > 0 else None

    def gradient_fn(self, height: int, width: int, seed: int):
        """f(image, shift) -> d score / d image for images of this size: tiled for spatial objectives (tile size
        from settings, or from free memory and the image size)."""
        if not self.objective.spatial:
            return gradient(self.score)
        # the image, the dreamed copy and the gradient stay in memory beside each tile
        reserved = 3 * 3 * 4 * height * width
        self.tile = self.settings.tile_size or auto_tile_size(
            self.bytes_per_px, memory_budget(self.device, reserved), self.margin
        )
        # seeded per dream, so each image (each video frame) gets the same tile offsets
        return tiled_gradient(self.score, self.strides, self.tile, self.margin, torch.Generator().manual_seed(seed))

    def close(self) -> None:
        self.taps.remove()

    def __enter__(self) -> "Dreamer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def plan(self, height: int, width: int) -> OctavePlan:
        """How an image of this size is dreamed (see `octave_plan`; sizes are the working copy's)."""
        return octave_plan(self.settings, height, width, self.backbone.min_size)

    def steps_per_image(self, height: int, width: int) -> int:
        return self.plan(height, width).total

    def _ascend(
        self, start, plan: OctavePlan, grad_fn, generator, progress, keep=None, watch: Watch | None = None
    ) -> torch.Tensor:
        """Ascend `start` in place. `keep` = (picture, mask): after every step the pixels the mask marks
        0 are put back to the picture, so the dream never spreads there (partial values are blended once,
        at the end, in `dream`)."""
        s = self.settings

        def on_step() -> None:
            if keep is not None:
                picture, frozen = keep
                with torch.no_grad():
                    start.copy_(torch.where(frozen, picture, start))
            if watch is not None:
                watch(start)
            if progress is not None:
                progress.update()

        return ascend(
            start,
            grad_fn,
            steps=plan.steps,
            step_size=s.step_size,
            optimizer=s.optimizer,
            jitter=min(s.jitter, int(min(start.shape[-2:]) * plan.roll)),
            blur=self.smooth,
            generator=generator,
            on_step=on_step if keep is not None or watch is not None or progress is not None else None,
            inplace=True,  # the hooks see the very tensor the step rule updates
        )

    def dream(
        self,
        image: torch.Tensor,
        generator: torch.Generator | None = None,
        progress: Progress | None = None,
        *,
        mask: torch.Tensor | None = None,
        watch: Watch | None = None,
    ) -> torch.Tensor:
        """Dream an RGB image in [0, 1] (1 x 3 x H x W); returns a tensor of the same shape.

        `mask` (H x W or 1 x 1 x H x W in [0, 1]): 1 dreams, 0 keeps the input exactly, values between
        blend the dream with the input. `watch` sees the current image after every step. A picture with a
        side below the network's minimum is dreamed as a larger working copy (`working_size`, which `watch`
        sees); what the dream added there is brought back to the picture's size.
        """
        s = self.settings
        if s.mask is not None and mask is None:
            raise SettingsError(f"the mask {s.mask} was not loaded: this command does not apply masks")
        seed = s.seed if s.seed is not None else 0
        if generator is None:
            generator = torch.Generator().manual_seed(seed)
        h, w = image.shape[-2:]
        size = working_size(h, w, self.backbone.min_size)
        check_dream_fits(size[1], size[0], self.device, "--max-size")
        image = image.to(self.device, torch.float32)
        mask = fit_mask(mask, (h, w)).to(self.device) if mask is not None else None
        work = resize(image, size).clamp_(0, 1) if size != (h, w) else image
        dreamed = self._dream_pyramid(work, seed, generator, progress, mask, watch)
        if size != (h, w):  # B x 3 x h x w again: the input plus what the dream added to its copy
            dreamed = (image + resize(dreamed - work, (h, w))).clamp_(0, 1)
        return dreamed if mask is None else torch.lerp(image, dreamed, mask)  # mask 0: the input, exactly

    def _dream_pyramid(self, image, seed, generator, progress, mask, watch) -> torch.Tensor:
        """The octave pyramid over an image of at least the network's minimum size; `mask` at any size."""
        s = self.settings
        h, w = image.shape[-2:]
        plan = self.plan(h, w)
        grad_fn = self.gradient_fn(h, w, seed + 1)

        def keep(size):  # the input and its frozen (mask 0) pixels at one octave's size
            if mask is None:
                return None
            return resize(image, size), (fit_mask(mask, size) == 0).expand(1, 3, *size)

        if s.octave_mode == "blend":
            return self._dream_blend(image, plan, grad_fn, generator, progress, keep, watch)
        return self._dream_detail(image, plan, grad_fn, generator, progress, keep, watch)

    def _dream_detail(self, image, plan, grad_fn, generator, progress, keep, watch) -> torch.Tensor:
        """Octave pyramid with detail re-injection: what a small octave added is carried to the next."""
        sizes = plan.sizes
        detail = torch.zeros_like(resize(image, sizes[0]))
        for i, size in enumerate(sizes):
            if progress is not None:
                progress.set_description(f"octave {i + 1}/{len(sizes)}")
            base = resize(image, size)
            start = (base + resize(detail, size)).clamp_(0, 1)
            detail = None  # at 8K every full-size tensor is 400 MB: hold none that is not needed
            dreamed = self._ascend(start, plan, grad_fn, generator, progress, keep(size), watch)
            if i + 1 < len(sizes):
                detail = dreamed - base  # keep only what the dream added, re-injected at the next octave
        return dreamed

    def _dream_blend(self, image, plan, grad_fn, generator, progress, keep, watch) -> torch.Tensor:
        """VGG19 design: blur + downscale, dream the small octave, upscale, blend 0.6, dream again."""
        s = self.settings
        levels = [image]
        for size in reversed(plan.sizes[:-1]):
            blurred = self.blend_blur(levels[-1]) if self.blend_blur is not None else levels[-1]
            levels.append(resize(blurred, size))
        dreamed = None
        for i, level in enumerate(reversed(levels)):
            if progress is not None:
                progress.set_description(f"octave {i + 1}/{len(levels)}")
            if dreamed is not None:
                level = torch.lerp(level, resize(dreamed, level.shape[-2:]), s.octave_blend)
            start = level.clone() if level is image else level  # never dream the caller's tensor in place
            dreamed = self._ascend(start, plan, grad_fn, generator, progress, keep(tuple(level.shape[-2:])), watch)
        return dreamed


# full-size float tensors a dream holds at once beside its tiles: the image, the octave's start and its
# dream, the gradient, the detail and a resize temporary
FULL_SIZE_COPIES = 6


def check_dream_fits(width: int, height: int, device: torch.device, lower: str) -> None:
    """SettingsError, before any allocation, for a picture too large to dream in the memory there is."""
    check_memory(FULL_SIZE_COPIES * 3 * 4 * width * height, f"a {width}x{height} dream", lower, device)


def guide_of(settings: Settings, guide: torch.Tensor | None = None) -> torch.Tensor | None:
    """The guide picture (1 x 3 x H x W in [0, 1]): `guide` when given, else the settings' guide file, if any."""
    if guide is not None or not settings.guide:
        return guide
    return imagefiles.load_image(settings.guide, settings.max_size)[0]


def noise_image(width: int, height: int, generator: torch.Generator) -> torch.Tensor:
    """A grey image with low-amplitude uniform noise, the classic start for visualising a layer."""
    check_dream_fits(width, height, torch.device("cpu"), "--size")
    return 0.5 + 0.1 * (torch.rand(1, 3, height, width, generator=generator) - 0.5)
