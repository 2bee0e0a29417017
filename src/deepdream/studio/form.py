"""Settings <-> the values of the page's controls, both ways, as plain data (no Gradio here).

The page shows most Settings fields one control each; a few need translating (a checkpoint is picked
in the model list, 0 means 'auto', layers are a list). Fields without a control (weights, blend
blur) ride along in the settings the form started from, so "dream again" restores all.
"""

from __future__ import annotations

from typing import Any

from ..errors import SettingsError
from ..settings import Settings, from_mapping, index_list

CHECKPOINT = "checkpoint:"  # model-list values that name a trained checkpoint file

# controls that are Settings fields as they are
PLAIN = (
    "octaves",
    "octave_scale",
    "octave_mode",
    "octave_blend",
    "step_size",
    "optimizer",
    "jitter",
    "smoothing",
    "precision",
    "device",
    "max_size",
    "init",
)
CONTROLS = (
    *PLAIN,
    "model",
    "layers",
    "channels",
    "target_class",
    "iterations",
    "tile_size",
    "seed",
    "width",
    "height",
    "guide",
    "guide_layer",
)


def _int(value: Any, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a number, got {value!r}") from None
    if number != int(number):
        raise SettingsError(f"{name} must be a whole number, got {value}")
    return int(number)


def channel_list(text: str | None) -> tuple[int, ...]:
    """'0-7,12' -> (0, ..., 7, 12); empty text -> (). SettingsError for the page on anything else."""
    try:
        return index_list(text)
    except SettingsError as exc:
        raise SettingsError(f"channels: {exc}") from None


def to_settings(base: Settings, values: dict[str, Any], seed: int | None) -> Settings:
    """Settings from the controls' values on top of `base`; SettingsError with a message for the page."""
    out = base.to_dict()
    out.update({name: values[name] for name in PLAIN})
    for name in ("octaves", "jitter", "max_size"):
        out[name] = _int(out[name], name.replace("_", " "))
    model = values["model"] or base.model
    if model.startswith(CHECKPOINT):
        out["checkpoint"], out["weights"] = model.removeprefix(CHECKPOINT), None
    else:
        out["model"], out["checkpoint"] = model, None
        if model != base.model:
            out["weights"] = None  # a weights file belongs to the model it came with
    layers = values["layers"] or []
    out["layers"] = ",".join(layers) if layers else None
    out["channels"] = channel_list(values["channels"])
    out["target_class"] = values["target_class"] or None
    out["iterations"] = _int(values["iterations"], "iterations") or None  # 0: the automatic default
    out["tile_size"] = _int(values["tile_size"], "tile size") or None
    out["size"] = (_int(values["width"], "width"), _int(values["height"], "height"))
    out["guide"] = values["guide"] or None
    out["guide_layer"] = (values["guide_layer"] or "").strip() or None
    out["seed"] = seed
    return from_mapping(out)


def from_settings(settings: Settings) -> dict[str, Any]:
    """The controls' values that show `settings`."""
    values = {name: getattr(settings, name) for name in PLAIN}
    values["model"] = CHECKPOINT + settings.checkpoint if settings.checkpoint else settings.model
    values["layers"] = [x.strip() for x in settings.layers.split(",")] if settings.layers else []
    values["channels"] = ",".join(map(str, settings.channels))
    values["target_class"] = settings.target_class
    values["iterations"] = settings.iterations or 0
    values["tile_size"] = settings.tile_size or 0
    values["seed"] = settings.seed
    values["width"], values["height"] = settings.size
    values["guide"] = settings.guide
    values["guide_layer"] = settings.guide_layer or ""
    return values
