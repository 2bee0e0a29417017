"""The octave pyramid around the ascent loop, and the `dream()` entry point."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from PIL import Image

from . import image as imageio
from .ascent import ascend, gradient, is_depthwise, native_bf16, scorer
from .backbones import Backbone, load_backbone
from .errors import ModelError, SettingsError
from .filters import GaussianBlur
from .folding import fold_batchnorm
from .objectives import ClassLogProb, Guide, Objective, guide_features, layer_objective, parse_layer_spec
from .settings import FOURIER_STEPS, Settings, from_mapping
from .taps import Taps
from .tiling import auto_tile_size, bytes_per_pixel, layer_strides, margin_for, memory_budget, tiled_gradient


class Progress(Protocol):
    """What the dream loop reports to (tqdm fits)."""

    def update(self, n: int = 1) -> object: ...

    def set_description(self, desc: str) -> object: ...


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SettingsError("--device cuda requested but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SettingsError("--device mps requested but MPS is not available")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device, model: torch.nn.Module | None = None) -> str:
    """'auto': bf16 where the hardware runs it natively (CUDA, CPUs with AVX512-BF16/AMX), else fp32.

    On the CPU, networks built on depthwise convolutions (EfficientNet) stay fp32: they are memory-bound
    and bf16 made the embedded network slower (0.70x), while VGG/ResNet/Inception gain 1.9-3.1x
    (benchmarks/speed.py).
    """
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if native_bf16(device) else "fp16"
    if device.type == "cpu" and native_bf16(device):
        return "fp32" if model is not None and any(is_depthwise(m) for m in model.modules()) else "bf16"
    return "fp32"


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of B x C x H x W to (H, W), antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)


def octave_sizes(height: int, width: int, octaves: int, scale: float, min_size: int) -> list[tuple[int, int]]:
    """Sizes from smallest to full; octaves that would go below min_size are dropped."""
    sizes = []
    for i in range(octaves):
        s = scale ** -i
        h, w = round(height * s), round(width * s)
        if min(h, w) < min_size and sizes:
            break
        sizes.append((max(h, 1), max(w, 1)))
    return sizes[::-1]


@dataclass
class Dreamer:
    """A loaded backbone with its objective and settings: dream any number of images with one load."""

    backbone: Backbone
    objective: Objective
    settings: Settings

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

    def _gradient_fn(self, height: int, width: int, seed: int):
        """Tiled for spatial objectives (tile size from settings, or from free memory and the image size)."""
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

    def steps_per_image(self, height: int, width: int) -> int:
        s = self.settings
        return s.steps * len(octave_sizes(height, width, s.octaves, s.octave_scale, self.backbone.min_size))

    def _ascend(self, image, grad_fn, generator, progress, inplace: bool) -> torch.Tensor:
        s = self.settings
        return ascend(
            image,
            grad_fn,
            steps=s.steps,
            step_size=s.step_size,
            optimizer=s.optimizer,
            jitter=s.jitter,
            blur=self.smooth,
            generator=generator,
            on_step=progress.update if progress is not None else None,
            inplace=inplace,
        )

    def dream(
        self, image: torch.Tensor, generator: torch.Generator | None = None, progress: Progress | None = None
    ) -> torch.Tensor:
        """Dream an RGB image in [0, 1] (1 x 3 x H x W); returns a tensor of the same shape."""
        s = self.settings
        seed = s.seed if s.seed is not None else 0
        if generator is None:
            generator = torch.Generator().manual_seed(seed)
        image = image.to(self.device, torch.float32)
        h, w = image.shape[-2:]
        sizes = octave_sizes(h, w, s.octaves, s.octave_scale, self.backbone.min_size)
        if min(h, w) < self.backbone.min_size:
            raise SettingsError(f"image is {w}x{h}; {self.backbone.name} needs at least {self.backbone.min_size} px a side")
        grad_fn = self._gradient_fn(h, w, seed + 1)
        if s.octave_mode == "blend":
            return self._dream_blend(image, sizes, grad_fn, generator, progress)
        detail = torch.zeros_like(resize(image, sizes[0]))
        for i, size in enumerate(sizes):
            if progress is not None:
                progress.set_description(f"octave {i + 1}/{len(sizes)}")
            base = resize(image, size)
            start = (base + resize(detail, size)).clamp_(0, 1)
            del detail  # at 8K every full-size tensor is 400 MB: hold none that is not needed
            dreamed = self._ascend(start, grad_fn, generator, progress, inplace=True)
            if i + 1 < len(sizes):
                detail = dreamed - base  # keep only what the dream added, re-injected at the next octave
        return dreamed

    def _dream_blend(self, image, sizes, grad_fn, generator, progress) -> torch.Tensor:
        """VGG19 design: blur + downscale, dream the small octave, upscale, blend 0.6, dream again."""
        s = self.settings
        levels = [image]
        for size in reversed(sizes[:-1]):
            blurred = self.blend_blur(levels[-1]) if self.blend_blur is not None else levels[-1]
            levels.append(resize(blurred, size))
        dreamed = None
        for i, level in enumerate(reversed(levels)):
            if progress is not None:
                progress.set_description(f"octave {i + 1}/{len(levels)}")
            if dreamed is not None:
                level = torch.lerp(level, resize(dreamed, level.shape[-2:]), s.blend)
            dreamed = self._ascend(level, grad_fn, generator, progress, inplace=level is not image)
        return dreamed


def build_objective(backbone: Backbone, settings: Settings, guide: torch.Tensor | None = None) -> Objective:
    """The objective the settings describe: layer energy/channels, plus a class, plus a guide."""
    terms: list[Objective] = []
    try:
        specs = parse_layer_spec(settings.layers) if settings.layers is not None else []
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    layers = [(backbone.resolve_layer(name), weight) for name, weight in specs]
    default_layer = backbone.recommended_layers[0] if backbone.recommended_layers else backbone.layer_names()[-1]
    if guide is not None:
        guide_layer = backbone.resolve_layer(settings.guide_layer) if settings.guide_layer else (layers or [(default_layer,)])[-1][0]
        with Taps(backbone.model, [guide_layer]) as taps, torch.no_grad():
            acts = taps(backbone.normalize(guide.to(backbone.device)).contiguous(memory_format=torch.channels_last))
        terms.append(Guide(guide_layer, guide_features(acts[guide_layer])))
    if settings.target_class is not None:
        terms.append(ClassLogProb(backbone.resolve_class(settings.target_class)))
    if not layers and (settings.channels or not terms):
        layers = [(default_layer, 1.0)]
    for name, _ in layers if settings.channels else ():
        n = _channel_count(backbone, name)
        bad = [c for c in settings.channels if not 0 <= c < n]
        if bad:
            raise ModelError(f"channel {bad[0]} out of range: {name} has {n} channels (0..{n - 1})")
    if layers:
        terms.append(layer_objective(layers, settings.channels))
    return terms[0] if len(terms) == 1 else sum(terms[1:], terms[0])


def _channel_count(backbone: Backbone, layer: str) -> int:
    with Taps(backbone.model, [layer]) as taps, torch.no_grad():
        size = max(64, backbone.min_size)
        return taps(torch.zeros(1, 3, size, size, device=backbone.device))[layer].shape[1]


def noise_image(width: int, height: int, generator: torch.Generator) -> torch.Tensor:
    """A grey image with low-amplitude uniform noise, the classic start for visualising a layer."""
    return 0.5 + 0.1 * (torch.rand(1, 3, height, width, generator=generator) - 0.5)


def dream(
    image: str | Path | Image.Image | None = None,
    *,
    settings: Settings | None = None,
    backbone: Backbone | None = None,
    progress: bool = False,
    **overrides,
) -> Image.Image:
    """Dream an image (path, PIL image, or None for noise) and return a PIL image.

    Settings come from `settings` with keyword overrides, e.g. `dream("cat.jpg", layers="blocks.4")`.
    The returned image's `info["deepdream"]` holds the full settings (seed included) as JSON.
    """
    settings = from_mapping({**(settings or Settings()).to_dict(), **overrides})
    if settings.seed is None:
        settings = settings.replace(seed=random.randrange(2**31))
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
        rgb, alpha = imageio.pil_to_tensor(img)
    else:
        rgb, alpha = imageio.load_image(image, settings.max_size)

    if backbone is None:
        backbone = load_backbone(
            settings.model, weights=settings.weights, checkpoint=settings.checkpoint, device=resolve_device(settings.device)
        )
    guide = imageio.load_image(settings.guide, settings.max_size)[0] if settings.guide else None
    objective = build_objective(backbone, settings, guide)
    fourier = settings.init == "fourier"
    if fourier:
        steps = settings.iterations or FOURIER_STEPS
    else:
        sizes = octave_sizes(*rgb.shape[-2:], settings.octaves, settings.octave_scale, backbone.min_size)
        steps = settings.steps * len(sizes)

    def run(bar: Progress | None) -> torch.Tensor:
        if fourier:
            from .features import render

            width, height = settings.size
            precision = resolve_precision(settings.precision, backbone.device, backbone.model)
            return render(backbone, objective, width=width, height=height, steps=steps, generator=generator,
                          precision=precision, progress=bar)
        with Dreamer(backbone, objective, settings) as dreamer:
            return dreamer.dream(rgb, generator, bar)

    if progress:
        from tqdm import tqdm

        with tqdm(total=steps, unit="step", leave=False) as bar:
            out = run(bar)
    else:
        out = run(None)
    result = imageio.tensor_to_pil(out, alpha)
    result.info["deepdream"] = settings.to_json()
    return result
