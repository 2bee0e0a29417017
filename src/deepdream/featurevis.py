"""Feature visualisation: optimise an image's Fourier spectrum, not its pixels.

Raw-pixel ascent from noise fills the image with high-frequency patterns a network responds to but a
person cannot read. Following lucid/lucent (Olah et al., "Feature Visualization", Distill 2017), the
image is parameterised as a spectrum whose coefficients are scaled by 1/frequency (every frequency
starts with about the same energy as in natural images), colour is decorrelated with the ImageNet
colour-correlation matrix, a sigmoid maps the result into [0, 1], and each step looks at the image
through a small random pad / jitter / scale / rotation so only robust features survive.

A class picture needs more than that to be recognised by a network that did not make it: the
"class" recipe looks at each step's picture through four independently zoomed (0.7-1.5), rotated
and shifted views, gives the spectrum a steeper 1/f^1.5 decay (larger shapes, fewer fine textures),
and can average the objective over an ensemble of networks (benchmarks/classvis.py).

The "maco" look (Fel et al., "Unlocking Feature Visualization for Deeper Networks with MAgnitude
Constrained Optimization", NeurIPS 2023) optimises only the spectrum's phase: its amplitude stays fixed
to the mean spectrum of real photos (`data/maco_spectrum.npy`, fitted by `fit_spectrum`), so the picture
keeps natural-image statistics however deep the network; random crops and noise give robustness, and the
gradients that reach each pixel, summed over the steps, say which parts of the picture matter (`importance`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .engine.folding import fold_batchnorm
from .engine.objectives import Objective
from .engine.taps import OUTPUT, Taps
from .errors import ModelError, SettingsError
from .models.backbone import Backbone
from .runtime import autocast, check_finite, check_memory, resolve_precision, saved_bytes

Transform = Callable[[torch.Tensor], torch.Tensor]

# square root of the ImageNet RGB colour correlation (lucid's `color_correlation_svd_sqrt`),
# normalised so its largest column has unit norm
_COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
# lucid divides the inverse FFT by 4: a smaller spread keeps the sigmoid out of saturation at the start
_SPECTRUM_MAGIC = 4.0


def color_matrix() -> torch.Tensor:
    """3 x 3 matrix mapping decorrelated colour components to RGB."""
    m = torch.tensor(_COLOR_CORRELATION_SVD_SQRT, dtype=torch.float32)
    return m / m.norm(dim=0).max()


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """H x (W//2+1) weights 1/|f|^decay for a real 2-D FFT; the DC term gets the lowest frequency's weight."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / freqs.clamp(min=1.0 / max(height, width)) ** decay_power


class FourierImage(torch.nn.Module):
    """An RGB image in [0, 1] whose learnable parameter is a scaled, colour-decorrelated spectrum."""

    def __init__(
        self,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        batch: int = 1,
        sd: float = 0.01,
        decay_power: float = 1.0,
    ):
        super().__init__()
        self.size = (height, width)
        # B x 3 x H x (W//2+1) x (real, imag), drawn on the CPU generator so a seed means the same image everywhere
        init = torch.randn(batch, 3, height, width // 2 + 1, 2, generator=generator) * sd
        self.spectrum = torch.nn.Parameter(init)
        self.register_buffer(
            "scale", spectrum_scale(height, width, decay_power)[None, None, :, :, None], persistent=False
        )
        self.register_buffer("color", color_matrix(), persistent=False)

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex((self.scale * self.spectrum).contiguous())
        x = torch.fft.irfftn(spectrum, s=self.size, norm="ortho") / _SPECTRUM_MAGIC  # B x 3 x H x W
        x = torch.einsum("bchw,rc->brhw", x, self.color)  # decorrelated -> RGB
        return torch.sigmoid(x)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit standard deviation over the whole tensor."""
    return (x - x.mean()) / (x.std() + 1e-4)


SPECTRUM_FILE = "maco_spectrum.npy"  # 3 x S x (S//2+1) mean amplitude of decorrelated photos (fit_spectrum)


def natural_spectrum() -> torch.Tensor:
    """The packaged amplitude spectrum of photos (see `fit_spectrum` and docs/explore.md)."""
    with resources.as_file(resources.files("deepdream") / "data" / SPECTRUM_FILE) as path:
        return torch.from_numpy(np.load(path).astype(np.float32))


def decorrelate(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (B x 3 x H x W) -> the decorrelated colour components `color_matrix()` maps back to RGB."""
    return torch.einsum("bchw,rc->brhw", rgb, torch.linalg.inv(color_matrix()))


def fit_spectrum(images: Iterable[torch.Tensor], size: int = 128) -> torch.Tensor:
    """Mean amplitude |rfft2| of decorrelated, mean-free photos (each 3 x H x W in [0, 1], centre-cropped square
    and resized to `size`): 3 x size x (size//2+1), the amplitude MACO keeps fixed (DC: 0)."""
    total, count = torch.zeros(3, size, size // 2 + 1), 0
    for rgb in images:
        side = min(rgb.shape[-2:])
        top, left = (rgb.shape[-2] - side) // 2, (rgb.shape[-1] - side) // 2
        square = rgb[None, :, top : top + side, left : left + side]
        x = F.interpolate(square, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        colour = decorrelate(x)[0]
        # each picture's mean colour is taken out: a DC term would dwarf every other frequency, and after
        # standardising it would leave a flat, tinted picture (brightness comes from the sigmoid's centre)
        total += torch.fft.rfft2(colour - colour.mean((1, 2), keepdim=True), norm="ortho").abs()
        count += 1
    if count == 0:
        raise SettingsError("no photos to fit a spectrum from")
    return total / count


class MacoImage(torch.nn.Module):
    """An RGB image in [0, 1] whose only learnable parameter is its spectrum's phase; the amplitude is a
    fixed buffer (a natural-image spectrum resized to the picture), so it cannot drift to noise."""

    def __init__(self, height: int, width: int, *, generator: torch.Generator, spectrum: torch.Tensor, batch: int = 1):
        super().__init__()
        self.size = (height, width)
        shape = (height, width // 2 + 1)
        amplitude = F.interpolate(
            spectrum[None].float(), size=shape, mode="bilinear", antialias=True, align_corners=False
        )
        self.register_buffer("amplitude", amplitude, persistent=False)  # 1 x 3 x H x (W//2+1)
        self.phase = torch.nn.Parameter(torch.randn(batch, 3, *shape, generator=generator))
        self.register_buffer("color", color_matrix(), persistent=False)

    def forward(self) -> torch.Tensor:
        spectrum = torch.polar(self.amplitude.expand_as(self.phase), standardize(self.phase))
        x = standardize(torch.fft.irfft2(spectrum, s=self.size, norm="ortho"))  # B x 3 x H x W
        x = torch.einsum("bchw,rc->brhw", x, self.color)  # decorrelated -> RGB
        return torch.sigmoid(x)


# ---------------------------------------------------------------- random transforms


@dataclass
class Pad:
    """Constant padding on every side (grey by default), so jitter and rotation see a border, not a wrap."""

    pixels: int
    value: float = 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pixels
        return F.pad(x, (p, p, p, p), mode="constant", value=self.value)


@dataclass
class Jitter:
    """Random crop that removes `pixels` rows and columns: a shift of up to `pixels` - 1."""

    pixels: int
    generator: torch.Generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        dy, dx = torch.randint(0, self.pixels, (2,), generator=self.generator).tolist()
        return x[..., dy : dy + h - self.pixels + 1, dx : dx + w - self.pixels + 1]


@dataclass
class RandomScale:
    """Bilinear resize by a factor chosen uniformly from `scales`."""

    scales: Sequence[float]
    generator: torch.Generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scales[int(torch.randint(len(self.scales), (1,), generator=self.generator))]
        if s == 1:
            return x
        h, w = x.shape[-2:]
        return F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", align_corners=False)


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate B x C x H x W about its centre (bilinear, border pixels repeated outside)."""
    if degrees == 0:
        return x
    a = math.radians(degrees)
    h, w = x.shape[-2:]
    # affine_grid works in normalised coordinates; correct for the aspect ratio so the rotation is rigid
    theta = torch.tensor(
        [[math.cos(a), -math.sin(a) * h / w, 0.0], [math.sin(a) * w / h, math.cos(a), 0.0]],
        dtype=x.dtype,
        device=x.device,
    )
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass
class RandomRotate:
    """Rotation by an angle (degrees) chosen uniformly from `angles`."""

    angles: Sequence[float]
    generator: torch.Generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return rotate(x, self.angles[int(torch.randint(len(self.angles), (1,), generator=self.generator))])


@dataclass
class RandomAffine:
    """Each batch item seen through its own random zoom, rotation and shift, resampled to `size` (H, W).

    A zoom below 1 shows the whole picture smaller inside a grey border, above 1 a crop of it; one
    grid_sample call draws every view. This is the per-view transformation robustness of lucid's
    class visualisations: a class survives only as an object, at several scales and angles.
    """

    scale: tuple[float, float]
    degrees: float
    shift: float  # largest shift, as a fraction of the side
    generator: torch.Generator
    size: tuple[int, int] | None = None  # None: the input's size
    fill: float = 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # B x C x H x W -> B x C x h x w
        b, c, h, w = x.shape
        out_h, out_w = self.size or (h, w)
        r = torch.rand(b, 4, generator=self.generator).to(x.device, x.dtype)
        zoom = self.scale[0] + (self.scale[1] - self.scale[0]) * r[:, 0]
        angle = torch.deg2rad((2 * r[:, 1] - 1) * self.degrees)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        shift = (2 * r[:, 2:] - 1) * 2 * self.shift  # normalised coordinates span 2
        # B x 2 x 3 output->input maps in normalised coordinates, corrected for the aspect ratio
        theta = torch.stack(
            [torch.stack([cos, -sin * h / w, shift[:, 0]], 1), torch.stack([sin * w / h, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta, [b, c, out_h, out_w], align_corners=False)
        return (
            F.grid_sample(x - self.fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + self.fill
        )


@dataclass
class Noise:
    """Gaussian plus uniform noise of this size on every view (MACO's robustness to small perturbations)."""

    level: float
    generator: torch.Generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        gauss = torch.randn(x.shape, generator=self.generator).to(x.device, x.dtype)
        uniform = torch.rand(x.shape, generator=self.generator).to(x.device, x.dtype) - 0.5
        return x + self.level * (gauss + uniform)


def compose(transforms: Sequence[Transform]) -> Transform:
    def apply(x: torch.Tensor) -> torch.Tensor:
        for t in transforms:
            x = t(x)
        return x

    return apply


def standard_transforms(generator: torch.Generator) -> Transform:
    """lucid's robustness transforms: pad 12, jitter 8, scale 0.9-1.1, rotate +-10 degrees, jitter 4."""
    return compose(
        [
            Pad(12),
            Jitter(8, generator),
            RandomScale([1 + (i - 5) / 50 for i in range(11)], generator),
            RandomRotate(list(range(-10, 11)) + [0] * 5, generator),
            Jitter(4, generator),
        ]
    )


# ---------------------------------------------------------------- rendering


def class_transforms(generator: torch.Generator, height: int, width: int) -> Transform:
    """Per-view robustness for class pictures: zoom 0.7-1.5, rotate +-20 degrees, shift +-10 %.

    Views are drawn at 0.72 of the picture's side (cheaper, and together with the zoom the class is
    seen at 0.5-1.07 times the picture's own scale, so it also holds at full size).
    """
    size = (max(1, round(height * 0.72)), max(1, round(width * 0.72)))
    return RandomAffine(scale=(0.7, 1.5), degrees=20.0, shift=0.1, generator=generator, size=size)


def maco_transforms(generator: torch.Generator, height: int, width: int) -> Transform:
    """MACO's robustness: random crops of 50-80 % of the side around the centre (+-15 %), and noise.

    Crops are resampled to 0.72 of the picture's side, as the class look's views are.
    """
    size = (max(1, round(height * 0.72)), max(1, round(width * 0.72)))
    crops = RandomAffine(scale=(1.25, 2.0), degrees=0.0, shift=0.15, generator=generator, size=size)
    return compose([crops, Noise(0.02, generator)])


Picture = Callable[[int, int, torch.Generator], torch.nn.Module]  # (height, width, generator) -> image module


@dataclass(frozen=True)
class Look:
    """How a picture from nothing grows: its parameterisation, views per step, their transforms, Adam's rate."""

    views: int
    picture: Picture
    transforms: Callable[[torch.Generator, int, int], Transform]  # (generator, height, width) -> transform
    lr: float = 0.05


def _fourier(decay_power: float) -> Picture:
    # decay_power > 1 moves the spectrum's energy to low frequencies: larger, smoother shapes
    return lambda h, w, g: FourierImage(h, w, generator=g, decay_power=decay_power)


def _maco(h: int, w: int, g: torch.Generator) -> MacoImage:
    return MacoImage(h, w, generator=g, spectrum=natural_spectrum())


LOOKS: dict[str, Look] = {
    # lucid's channel visualisation: one view per step, small pad/jitter/scale/rotation
    "feature": Look(views=1, picture=_fourier(1.0), transforms=lambda g, h, w: standard_transforms(g)),
    # class pictures another network recognises (benchmarks/classvis.py): four strongly transformed
    # views per step and a smoother spectrum, so the class has to appear as an object, not a texture
    "class": Look(views=4, picture=_fourier(1.5), transforms=class_transforms),
    # MACO: only the phase moves, the amplitude is the photos' spectrum; crops and noise
    "maco": Look(views=4, picture=_maco, transforms=maco_transforms, lr=0.2),
}


# full-size float tensors of the picture itself: spectrum, its gradient and Adam's two moments (complex,
# half the width), the image, the views before transforming
PICTURE_BYTES_PER_PIXEL = 4 * (4 * 3 + 2 * 3)


def _check_fits(networks: Sequence[Backbone], views: int, width: int, height: int, device: torch.device) -> None:
    """Refuse a picture whose fwd+bwd cannot fit, from each network's activations on a small probe."""
    probe = max(64, *(net.min_size for net in networks))
    per_px = 0.0
    for net in networks:
        x = torch.zeros(1, 3, probe, probe, device=device, requires_grad=True)
        per_px += saved_bytes(net.model, net.model, x.contiguous(memory_format=torch.channels_last)) / probe**2
    need = width * height * (PICTURE_BYTES_PER_PIXEL + views * per_px)
    check_memory(need, f"a {width}x{height} feature visualisation", "the tile or picture size", device)


@dataclass(frozen=True)
class Rendering:
    """A picture from nothing and where it matters: `importance` (1 x 1 x H x W in [0, 1]) is the size of the
    objective's gradient at each pixel summed over the steps (MACO's transparency map)."""

    image: torch.Tensor  # 1 x 3 x H x W in [0, 1]
    importance: torch.Tensor


def render(backbone: Backbone, objective: Objective, **kwargs) -> torch.Tensor:
    """Return the 1 x 3 x H x W image in [0, 1] that maximises `objective` (see `grow` for the arguments)."""
    return grow(backbone, objective, **kwargs).image


def grow(
    backbone: Backbone,
    objective: Objective,
    *,
    width: int,
    height: int,
    steps: int,
    generator: torch.Generator,
    precision: str = "fp32",
    progress=None,
    lr: float | None = None,
    transforms: Transform | None = None,
    look: str = "feature",
    ensemble: Sequence[Backbone] = (),
) -> Rendering:
    """The picture that maximises `objective`, grown from a random spectrum, and its importance map.

    Each step scores the look's randomly transformed views of the image (`transforms` overrides
    them) on `backbone` and on every network of `ensemble`, and climbs the mean: a picture that
    satisfies several networks from many views shows what they share, not one network's blind spots.
    `generator` (a CPU generator) draws the initial spectrum and every random transform, so the same
    seed gives the same picture. `lr` overrides the look's Adam rate. `progress` (tqdm-like) gets one
    update per step.
    """
    if steps < 1:
        raise SettingsError(f"steps must be >= 1, got {steps}")
    if look not in LOOKS:
        raise SettingsError(f"unknown look '{look}' (choose from {', '.join(LOOKS)})")
    chosen = LOOKS[look]
    networks = (backbone, *ensemble)
    for net in networks:
        if min(width, height) < net.min_size:
            raise SettingsError(f"{width}x{height} is too small: {net.name} needs at least {net.min_size} px a side")
        if OUTPUT in objective.layers and net.categories != backbone.categories:
            raise ModelError(f"{net.name} and {backbone.name} do not share their classes: they cannot score one class")
        missing = sorted(objective.layers - set(dict(net.model.named_modules())))
        if missing:
            raise ModelError(
                f"{net.name} has no layer {', '.join(missing)}: every network needs the objective's layers"
            )
    device = backbone.device
    if precision == "auto":
        precision = resolve_precision(precision, device, backbone.model)
    _check_fits(networks, chosen.views, width, height, device)
    image = chosen.picture(height, width, generator).to(device)
    transform = transforms if transforms is not None else chosen.transforms(generator, height, width)
    # Adam with maximize=True climbs the objective directly: no loss with a flipped sign
    optimizer = torch.optim.Adam(image.parameters(), lr=chosen.lr if lr is None else lr, maximize=True)
    importance = torch.zeros(1, 1, height, width, device=device)
    with contextlib.ExitStack() as stack:
        taps = [
            stack.enter_context(Taps(fold_batchnorm(n.model, keep=objective.layers), objective.layers))
            for n in networks
        ]
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            picture = image()  # 1 x 3 x H x W
            picture.retain_grad()
            x = transform(picture.expand(chosen.views, -1, -1, -1))  # views x 3 x h x w
            score = 0.0
            for net, tap in zip(networks, taps):
                with autocast(device, precision):
                    score = (
                        score + objective(tap(net.normalize(x).contiguous(memory_format=torch.channels_last))).mean()
                    )
            (score / len(networks)).backward()
            importance += picture.grad.detach().abs().sum(1, keepdim=True)
            optimizer.step()
            if progress is not None:
                progress.update(1)
    with torch.no_grad():
        out = image().detach()
    check_finite(out, "the feature visualisation", "lower the learning rate --lr")
    return Rendering(out, importance / importance.max().clamp(min=1e-12))
