"""Labelled contact sheets of what a network learned: one dream per layer, or one picture per channel.

Every sheet is built from one loaded backbone; each tile is the engine's own result (a `Dreamer` dream
or a `features.render` visualisation) with its layer or channel written under it, and the settings
that made it go into the sheet's metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from . import imagefiles
from .engine.objectives import Channels, build_objective
from .engine.octaves import Dreamer, guide_of
from .errors import SettingsError
from .featurevis import render
from .models.backbone import Backbone
from .models.load import backbone_from_settings
from .runtime import Progress, progress_bar, resolve_precision
from .settings import FOURIER_STEPS, Settings, seeded

BACKGROUND = (18, 18, 18)
LABEL_COLOUR = (235, 235, 235)


# ---------------------------------------------------------------- geometry and drawing


@dataclass(frozen=True)
class Grid:
    """Where each tile and label of a sheet go; all in pixels, (x, y) from the top left."""

    count: int
    columns: int
    rows: int
    tile_width: int
    tile_height: int
    label_height: int
    gap: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole sheet."""
        return (
            self.gap + self.columns * (self.tile_width + self.gap),
            self.gap + self.rows * (self.tile_height + self.label_height + self.gap),
        )

    def tile_origin(self, index: int) -> tuple[int, int]:
        """Top-left corner of tile `index` (row-major)."""
        if not 0 <= index < self.count:
            raise IndexError(f"tile {index} of {self.count}")
        row, col = divmod(index, self.columns)
        return (
            self.gap + col * (self.tile_width + self.gap),
            self.gap + row * (self.tile_height + self.label_height + self.gap),
        )

    def label_box(self, index: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the label strip under tile `index`."""
        x, y = self.tile_origin(index)
        top = y + self.tile_height
        return x, top, x + self.tile_width, top + self.label_height


def grid_geometry(
    count: int, tile_width: int, tile_height: int, *, columns: int | None = None, label_height: int = 18, gap: int = 4
) -> Grid:
    """Layout of `count` tiles: up to 4 in one row, else a near-square grid (or `columns` per row)."""
    if count < 1:
        raise SettingsError("a sheet needs at least one tile")
    if columns is not None and columns < 1:
        raise SettingsError(f"columns must be >= 1, got {columns}")
    if columns is None:
        columns = count if count <= 4 else math.ceil(math.sqrt(count))
    columns = min(columns, count)
    return Grid(count, columns, math.ceil(count / columns), tile_width, tile_height, label_height, gap)


def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(8, height - 6))


def _fit(text: str, font, width: int) -> str:
    """The text, shortened from the left with '…' until it fits `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while len(text) > 1 and font.getlength("…" + text) > width:
        text = text[1:]
    return "…" + text


def make_sheet(
    tiles: Sequence[Image.Image],
    labels: Sequence[str],
    *,
    columns: int | None = None,
    label_height: int = 18,
    gap: int = 4,
) -> Image.Image:
    """An RGB sheet with each tile and its label centred underneath (tiles share the first tile's size)."""
    if len(tiles) != len(labels):
        raise ValueError(f"{len(tiles)} tiles but {len(labels)} labels")
    w, h = tiles[0].size
    grid = grid_geometry(len(tiles), w, h, columns=columns, label_height=label_height, gap=gap)
    sheet = Image.new("RGB", grid.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(label_height)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        if tile.size != (w, h):
            tile = tile.resize((w, h), Image.Resampling.LANCZOS)
        sheet.paste(tile.convert("RGB"), grid.tile_origin(i))
        left, top, right, bottom = grid.label_box(i)
        text = _fit(label, font, right - left - 2)
        draw.text(((left + right) / 2, (top + bottom) / 2), text, fill=LABEL_COLOUR, font=font, anchor="mm")
    return sheet


# ---------------------------------------------------------------- progress


class _TileProgress:
    """Forwards updates to a tqdm-like bar and prefixes every description with the current tile."""

    def __init__(self, bar: Progress, prefix: str):
        self.bar, self.prefix = bar, prefix
        bar.set_description(prefix)

    def update(self, n: int = 1) -> object:
        return self.bar.update(n)

    def set_description(self, desc: str) -> object:
        return self.bar.set_description(f"{self.prefix} {desc}")


class _Bar:
    """A tqdm bar when asked for (True), the caller's object, or nothing."""

    def __init__(self, progress: bool | Progress | None, total: int):
        self.owned = progress is True
        if self.owned:
            self.bar = progress_bar(total, unit="step")
        else:
            self.bar = progress or None

    def tile(self, index: int, count: int, label: str) -> Progress | None:
        return _TileProgress(self.bar, f"{label} ({index + 1}/{count})") if self.bar is not None else None

    def close(self) -> None:
        if self.owned:
            self.bar.close()


# ---------------------------------------------------------------- sheets


def _metadata(settings: Settings, sheet: dict) -> str:
    """Settings under 'deepdream' (what --config reads back) and the sheet's own description beside them."""
    return json.dumps({"deepdream": settings.to_dict(), "sheet": sheet}, sort_keys=True)


def sweep_layers(backbone: Backbone, layers: Sequence[str] | None = None, every: int = 1) -> list[str]:
    """Layer names for a sweep: the given ones, or the backbone's recommended layers in forward order;
    then every `every`-th of them."""
    if every < 1:
        raise SettingsError(f"--every must be >= 1, got {every}")
    if layers is None:
        order = {name: i for i, name in enumerate(backbone.layer_names())}
        layers = sorted(backbone.recommended_layers, key=lambda name: order.get(name, len(order)))
        if not layers:
            raise SettingsError(f"{backbone.name} has no recommended layers; give the layers to sweep")
    return [backbone.resolve_layer(spec) for spec in layers][::every]


def layer_sweep(
    image: Image.Image | torch.Tensor,
    backbone: Backbone | None,
    settings: Settings,
    layers: Sequence[str],
    *,
    guide: torch.Tensor | None = None,
    columns: int | None = None,
    with_input: bool = False,
    progress: bool | Progress | None = None,
) -> Image.Image:
    """A labelled sheet with the photo dreamed at each layer (same seed and settings for every tile).

    `image` is a PIL image (capped at settings.max_size) or an RGB tensor 1 x 3 x H x W in [0, 1];
    `layers` are names or indices; `backbone` None loads the settings' network (once for the sheet);
    `guide` None loads the settings' guide picture, if any.
    settings.mask applies to every tile.
    """
    if not layers:
        raise SettingsError("no layers to sweep")
    if isinstance(image, Image.Image):
        img = image.copy()
        img.thumbnail((settings.max_size, settings.max_size), Image.Resampling.LANCZOS)
        rgb = imagefiles.pil_to_tensor(img)[0]
    else:
        rgb = image
    settings = seeded(settings)
    mask = imagefiles.load_mask(settings.mask, tuple(rgb.shape[-2:])) if settings.mask else None
    backbone = backbone_from_settings(settings, backbone)
    names = [backbone.resolve_layer(spec) for spec in layers]  # every layer checked before any work
    plans = [settings.replace(layers=name) for name in names]
    guide = guide_of(settings, guide)
    for s in plans:
        build_objective(backbone, s, guide)  # channels and classes too
    tiles = [imagefiles.tensor_to_pil(rgb)] if with_input else []
    labels = ["input"] if with_input else []

    bar = None
    try:
        for i, (name, s) in enumerate(zip(names, plans)):
            with Dreamer.from_settings(s, backbone, guide) as dreamer:
                if bar is None:
                    bar = _Bar(progress, dreamer.steps_per_image(*rgb.shape[-2:]) * len(names))
                out = dreamer.dream(
                    rgb, torch.Generator().manual_seed(s.seed), bar.tile(i, len(names), name), mask=mask
                )
            tiles.append(imagefiles.tensor_to_pil(out))
            labels.append(name)
    finally:
        if bar is not None:
            bar.close()
    sheet = make_sheet(tiles, labels, columns=columns)
    sheet.info["deepdream"] = _metadata(
        settings.replace(layers=",".join(names)),
        {"kind": "layer_sweep", "model": backbone.name, "source": backbone.source, "tiles": labels},
    )
    return sheet


def channel_atlas(
    backbone: Backbone | None,
    layer: str,
    channels: Sequence[int],
    settings: Settings,
    tile_size: int = 128,
    *,
    columns: int | None = None,
    lr: float = 0.05,
    progress: bool | Progress | None = None,
) -> Image.Image:
    """A labelled sheet with one feature visualisation per channel of `layer`, each grown from noise.

    Tiles are `features.render` images (Fourier parameterisation, decorrelated colour, random
    transforms), tile_size px square, `settings.iterations` steps each (default FOURIER_STEPS), all
    from the same seed so only the channel differs.
    """
    if not channels:
        raise SettingsError("no channels for the atlas")
    settings = seeded(settings)
    backbone = backbone_from_settings(settings, backbone)
    layer = backbone.resolve_layer(layer)
    steps = settings.iterations or FOURIER_STEPS
    settings = settings.replace(
        layers=layer,
        channels=tuple(channels),
        target_class=None,
        guide=None,
        mask=None,
        init="fourier",
        size=(tile_size, tile_size),
        iterations=steps,
    )
    build_objective(backbone, settings)  # checks every channel index against the layer, before any work
    precision = resolve_precision(settings.precision, backbone.device, backbone.model)
    labels = [f"{layer}:{c}" for c in channels]
    bar = _Bar(progress, steps * len(channels))
    tiles = []
    try:
        for i, (channel, label) in enumerate(zip(channels, labels)):
            out = render(
                backbone,
                Channels(layer, (channel,)),
                width=tile_size,
                height=tile_size,
                steps=steps,
                generator=torch.Generator().manual_seed(settings.seed),
                precision=precision,
                progress=bar.tile(i, len(channels), label),
                lr=lr,
            )
            tiles.append(imagefiles.tensor_to_pil(out))
    finally:
        bar.close()
    sheet = make_sheet(tiles, labels, columns=columns)
    sheet.info["deepdream"] = _metadata(
        settings,
        {
            "kind": "channel_atlas",
            "model": backbone.name,
            "source": backbone.source,
            "layer": layer,
            "channels": list(channels),
            "tile_size": tile_size,
            "steps": steps,
            "lr": lr,
            "tiles": labels,
        },
    )
    return sheet
