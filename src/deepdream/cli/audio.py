"""Sub-command `audio`: dream a sound file (or a video's soundtrack) through its spectrogram."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..audio import OUTPUT_FORMATS, PHASES, AudioOptions, dream_audio, read_metadata
from ..audio.dreaming import AUDIO_DEFAULTS, MAX_CHUNK, MAX_STEPS, MIN_CHUNK, MIN_OVERLAP
from ..errors import DeepDreamError, SettingsError
from ..settings import PRESETS, Settings, from_mapping, load_config, preset
from .args import add_dream_options, non_negative_int, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audio",
        help="dream a sound through its spectrogram",
        description="Dream a sound file (WAV/FLAC/OGG/MP3, or a video's audio track): its log-magnitude "
        "spectrogram is dreamed as a picture and resynthesised at the input's rate, channels and length.",
    )
    p.add_argument("input", help="sound file, or a video whose first audio track is dreamed")
    p.add_argument("-o", "--output", required=True, help=f"output sound ({', '.join(OUTPUT_FORMATS)})")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("sound")
    g.add_argument(
        "--phase",
        choices=list(PHASES),
        help="original (default): keep the input's phase; griffinlim: let it follow the new magnitudes",
    )
    g.add_argument(
        "--griffin-lim-iterations",
        type=positive_int,
        help=f"iterations for --phase griffinlim (32, at most {MAX_STEPS})",
    )
    g.add_argument(
        "--survival-steps",
        type=non_negative_int,
        help="last steps scored on the sound as it will be written, so the dream survives resynthesis "
        f"(10, at most {MAX_STEPS})",
    )
    g.add_argument(
        "--chunk-seconds",
        type=positive_float,
        help=f"window length (10 s, {MIN_CHUNK:g}-{MAX_CHUNK:g}): memory does not grow with duration",
    )
    g.add_argument(
        "--overlap-seconds",
        type=positive_float,
        help=f"cross-fade between windows (1 s, {MIN_OVERLAP:g} s to half the chunk)",
    )
    g.add_argument("--dynamic-range", type=positive_float, help="decibels below the loudest bin the picture shows (80)")
    g.add_argument("--plot", metavar="PNG", help="also write a before/after spectrogram figure")
    add_dream_options(p)
    p.set_defaults(run=run_audio)


def _config(path: str) -> tuple[dict, dict]:
    """(settings, audio options) from a sound this tool wrote, or settings alone from a TOML file or image."""
    if Path(path).suffix.lower() not in OUTPUT_FORMATS:
        return load_config(path), {}
    try:
        data = read_metadata(path)
    except DeepDreamError:
        data = None
    if data is None:
        raise SettingsError(f"{path} holds no deepdream settings (not a sound this tool wrote)")
    audio = data.get("audio", {})
    if not isinstance(audio, dict):
        raise SettingsError(f"{path} holds audio options that are not a table of options: {audio!r}"[:300])
    return data["deepdream"], audio


def options_from_args(args: argparse.Namespace) -> tuple[Settings, AudioOptions]:
    """Audio defaults, then preset, then config file, then explicit options: later ones win."""
    values = {**Settings().to_dict(), **AUDIO_DEFAULTS}
    if args.preset:
        preset(args.preset)  # validates the name
        values.update(PRESETS[args.preset])  # only what the preset sets, so the audio defaults stay
    audio = AudioOptions().to_dict()
    if args.config:
        stored, stored_audio = _config(args.config)
        values.update(stored)
        audio.update(stored_audio)
    for f in dataclasses.fields(Settings):
        if getattr(args, f.name, None) is not None:
            values[f.name] = getattr(args, f.name)
    for name in audio:
        if getattr(args, name, None) is not None:
            audio[name] = getattr(args, name)
    try:
        return from_mapping(values), AudioOptions(**audio)
    except TypeError as exc:
        raise SettingsError(str(exc)) from None


def run_audio(args: argparse.Namespace) -> int:
    settings, options = options_from_args(args)
    result = dream_audio(
        args.input,
        args.output,
        settings=settings,
        options=options,
        force=args.force,
        progress=not args.quiet,
        plot=args.plot,
    )
    if not args.quiet:
        scaled = f", scaled by {result.scaled:.2f} to avoid clipping" if result.scaled < 1 else ""
        print(
            f"wrote {result.path} ({result.seconds:.2f} s, {result.sample_rate} Hz, {result.channels} ch{scaled})"
            + (f" and {args.plot}" if args.plot else ""),
            file=sys.stderr,
        )
    return 0
