"""Before/after spectrogram figure (matplotlib, Agg), drawn from the files in one streamed pass each."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .. import imagefiles
from . import io
from .spectro import Scale, Spectrogram, decibels

MAX_COLUMNS = 1600  # columns of the figure: long files are pooled in time, so memory stays flat
MAX_ROWS = 512


def strip(info: io.AudioInfo, geometry: Spectrogram, scale: Scale, samples: int) -> np.ndarray:
    """The file's spectrogram picture (rows x columns in [0, 1], low frequencies at the bottom), time-pooled."""
    pool = max(1, math.ceil(samples / geometry.hop / MAX_COLUMNS))
    pooled, pending = [], np.zeros((geometry.bins, 0), np.float32)
    # whole hops per window, so each window's columns continue the previous window's
    for _, x in io.windows(io.read_blocks(info), geometry.hop * 256):
        db = decibels(geometry.stft(torch.from_numpy(np.ascontiguousarray(x))).abs().mean(0))
        pending = np.concatenate([pending, db[:, : max(1, x.shape[1] // geometry.hop)].numpy()], axis=1)
        while pending.shape[1] >= pool:
            pooled.append(pending[:, :pool].mean(axis=1))
            pending = pending[:, pool:]
    if pending.shape[1] or not pooled:
        pooled.append(pending.mean(axis=1))
    picture = scale.picture(torch.from_numpy(np.stack(pooled, axis=1)))[:, :1]  # 1 x 1 x F x T
    if picture.shape[-2] > MAX_ROWS:
        picture = torch.nn.functional.adaptive_avg_pool2d(picture, (MAX_ROWS, picture.shape[-1]))
    return picture[0, 0].numpy()


def before_after(source: io.AudioInfo, output: io.AudioInfo, scale: Scale, samples: int, path: Path) -> Path:
    """Write a two-panel PNG: the input's spectrogram above the output's, on the same decibel scale."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    geometry = Spectrogram.for_rate(source.sample_rate)
    seconds = samples / source.sample_rate
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True, constrained_layout=True)
    for ax, info in zip(axes, (source, output)):
        ax.imshow(
            strip(info, geometry, scale, samples),
            aspect="auto",
            cmap="magma",
            vmin=0,
            vmax=1,
            extent=(0, seconds, 0, source.sample_rate / 2000),
        )
        ax.set_ylabel("kHz")
        ax.set_title(info.path.name, fontsize=9)
    axes[-1].set_xlabel("seconds")
    try:
        imagefiles.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path
