"""Dream settings as a frozen dataclass, named presets, and config files (TOML or a dreamed image)."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import SettingsError
from .runtime import check_seed, draw_seed

OCTAVE_MODES = ("detail", "blend")
INITS = ("image", "noise", "fourier", "maco")  # fourier: feature visualisation from a decorrelated spectrum
FROM_NOTHING = ("fourier", "maco")  # inits that grow a picture from a spectrum (maco: only its phase moves)
FOURIER_STEPS = 256
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
# step rules of engine/ascent.py (a test keeps the two in step; settings import nothing from the engine)
OPTIMIZER_CHOICES = ("ascent", "sgd", "adam")


LIST_LIMIT = 65536  # items a range like 0-N may expand to: more is a typo, and costs gigabytes before any check


def index_list(text: str | None) -> tuple[int, ...]:
    """'0-3,7' -> (0, 1, 2, 3, 7), as channels and token indices are written; empty text -> ()."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        lo, dash, hi = part.partition("-")
        try:
            items = range(int(lo), int(hi) + 1) if dash else range(int(lo), int(lo) + 1)
        except ValueError:
            raise SettingsError(f"bad list '{text}' (expected e.g. 0-7 or 1,4,9)") from None
        if not items:
            raise SettingsError(f"empty range '{part}'")
        if len(out) + len(items) > LIST_LIMIT:
            raise SettingsError(f"'{text}' holds more than {LIST_LIMIT} items")
        out.extend(items)
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    """Everything that determines a dream; saved with every output so it can be reproduced."""

    model: str = "efficientnet_lite0"
    ensemble: tuple[str, ...] = ()  # --init fourier: further networks whose objective is averaged with the model's
    weights: str | None = None
    checkpoint: str | None = None
    layers: str | None = None  # 'NAME[:WEIGHT],...' or layer indices; None: the backbone's first recommended layer
    channels: tuple[int, ...] = ()
    target_class: str | None = None
    guide: str | None = None
    guide_layer: str | None = None
    mask: str | None = None  # greyscale image: white dreams, black keeps the input, grey blends
    iterations: int | None = None  # None: 10, or 30 with a target class (see `steps`)
    octaves: int = 4
    octave_scale: float = 1.4
    octave_mode: str = "detail"
    octave_blend: float = 0.6  # octave_mode "blend": weight of the dreamed smaller octave
    blend_blur: float = 2.0
    step_size: float = 0.012
    optimizer: str = "ascent"
    jitter: int = 32
    smoothing: float = 1.0
    seed: int | None = None
    precision: str = "auto"
    device: str = "auto"
    max_size: int = 1024
    init: str = "image"
    size: tuple[int, int] = (512, 512)  # width, height for --init noise
    tile_size: int | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise SettingsError(message)

        def finite(value: float) -> bool:
            return isinstance(value, (int, float)) and math.isfinite(value)

        need(
            self.iterations is None or (isinstance(self.iterations, int) and self.iterations >= 1),
            f"iterations must be >= 1, got {self.iterations}",
        )
        need(isinstance(self.octaves, int) and self.octaves >= 1, f"octaves must be >= 1, got {self.octaves}")
        need(finite(self.octave_scale) and self.octave_scale > 1, f"octave scale must be > 1, got {self.octave_scale}")
        need(
            finite(self.step_size) and self.step_size > 0, f"step size must be a positive number, got {self.step_size}"
        )
        need(
            finite(self.octave_blend) and 0 <= self.octave_blend <= 1,
            f"octave blend must be in [0, 1], got {self.octave_blend}",
        )
        need(finite(self.blend_blur) and self.blend_blur >= 0, f"blend blur must be >= 0, got {self.blend_blur}")
        need(finite(self.smoothing) and self.smoothing >= 0, f"smoothing must be >= 0, got {self.smoothing}")
        need(isinstance(self.jitter, int) and self.jitter >= 0, f"jitter must be >= 0, got {self.jitter}")
        need(isinstance(self.max_size, int) and self.max_size >= 16, f"max size must be >= 16, got {self.max_size}")
        need(
            len(self.size) == 2 and all(isinstance(v, int) and v >= 16 for v in self.size),
            f"size must be two integers >= 16, got {'x'.join(map(str, self.size))}",
        )
        need(
            self.tile_size is None or (isinstance(self.tile_size, int) and self.tile_size >= 64),
            "tile size must be >= 64",
        )
        need(
            self.optimizer in OPTIMIZER_CHOICES,
            f"unknown optimizer '{self.optimizer}' (choose from {', '.join(OPTIMIZER_CHOICES)})",
        )
        need(self.octave_mode in OCTAVE_MODES, f"unknown octave mode '{self.octave_mode}' ({', '.join(OCTAVE_MODES)})")
        need(self.init in INITS, f"unknown init '{self.init}' ({', '.join(INITS)})")
        need(self.precision in PRECISION_CHOICES, f"unknown precision '{self.precision}'")
        need(self.device in DEVICE_CHOICES, f"unknown device '{self.device}'")
        need(
            self.layers is None or isinstance(self.layers, str), "layers must be a string like 'blocks.3:0.5,blocks.4'"
        )
        need(all(isinstance(n, str) and n for n in self.ensemble), "ensemble must list network names")
        need(not self.ensemble or self.init in FROM_NOTHING, "an ensemble applies to --init fourier/maco pictures only")
        need(self.mask is None or isinstance(self.mask, str), "mask must be the path of an image file")
        if self.seed is not None:
            check_seed(self.seed)

    @property
    def files(self) -> tuple[str, ...]:
        """The files these settings read (guide, mask, weights, checkpoint): no output may overwrite them."""
        return tuple(f for f in (self.guide, self.mask, self.weights, self.checkpoint) if f)

    @property
    def steps(self) -> int:
        """Ascent steps per octave: a class target needs more steps than a layer to take hold."""
        if self.iterations is not None:
            return self.iterations
        return 30 if self.target_class is not None else 10

    def replace(self, **changes: Any) -> "Settings":
        return from_mapping({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps({"deepdream": self.to_dict()}, sort_keys=True)


def seeded(settings: Settings) -> Settings:
    """The settings with their seed, or with a freshly drawn one (recorded with the output) when unseeded."""
    return settings if settings.seed is not None else settings.replace(seed=draw_seed())


# keys that older versions saved (configs, images' metadata) -> today's field
OLD_KEYS = {"blend": "octave_blend"}


def from_mapping(values: Mapping[str, Any]) -> Settings:
    """Build Settings from plain values (TOML, JSON metadata, CLI), with clear errors; old keys still load."""
    values = dict(values)
    for old, new in OLD_KEYS.items():
        if old in values:  # with both keys the old one wins: it is an override laid over a full table
            values[new] = values.pop(old)
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
    for key in ("channels", "size", "ensemble"):
        if key in values and values[key] is not None:
            values[key] = tuple(values[key])
    try:
        return Settings(**values)
    except TypeError as exc:
        raise SettingsError(str(exc)) from exc


# Presets are plain override tables: the tuned default, and the two reference designs.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # InceptionV3 truncated at layer index 10 (Mixed_6a), Adam, 20 iterations, lr 0.01, octave scale 1.4
    "inception-adam": {
        "model": "inception_v3",
        "layers": "10",
        "optimizer": "adam",
        "iterations": 20,
        "step_size": 0.01,
        "octave_scale": 1.4,
        "jitter": 0,
        "smoothing": 0.0,
    },
    # class picture another network recognises: Fourier "class" recipe made for lite0 + lite1, judged by
    # lite2 at p 0.87-1.00 on 4/4 classes (benchmarks/classvis.py, docs/explore.md)
    "class-noise": {"init": "fourier", "size": (224, 224), "ensemble": ("efficientnet_lite1",)},
    # VGG19 features up to a layer, 6 iterations, octave scale 2, blur (radius 2) + downscale + blend 0.6.
    # The reference's lr 0.2 multiplied a raw gradient; with normalised steps 0.02 is the equivalent strength.
    "vgg19-blend": {
        "model": "vgg19",
        "layers": "features.35",
        "iterations": 6,
        "step_size": 0.02,
        "octave_scale": 2.0,
        "octave_mode": "blend",
        "octave_blend": 0.6,
        "blend_blur": 2.0,
        "jitter": 0,
        "smoothing": 0.0,
    },
}


def preset(name: str) -> Settings:
    if name not in PRESETS:
        raise SettingsError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
    return from_mapping(PRESETS[name])


def load_config(path: str | Path) -> dict[str, Any]:
    """Settings values from a TOML file or from the metadata of an image this tool wrote."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"config file not found: {path}")
    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot parse {path}: {exc}") from exc
        return data.get("deepdream", data)
    from .errors import ImageError
    from .imagefiles import read_metadata

    try:
        meta = read_metadata(path)
    except ImageError:
        meta = None
    if meta is None:
        raise SettingsError(f"{path} holds no deepdream settings (not a TOML file nor an image this tool wrote)")
    return meta
