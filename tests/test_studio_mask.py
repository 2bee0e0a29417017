"""Masks (the studio paints them; `--mask FILE` everywhere else) and the engine's preview hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import deepdream
from conftest import run_cli, synthetic_photo
from deepdream.engine.objectives import Energy
from deepdream.imagefiles import read_metadata

TINY = dict(octaves=2, iterations=2, jitter=4, seed=3)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    synthetic_photo(64, 48).save(path)
    return path


def save_mask(path, left: int, right: int):
    mask = np.full((48, 64), right, np.uint8)
    mask[:, :32] = left
    Image.fromarray(mask).save(path)
    return path


@pytest.mark.parametrize("mode", ["detail", "blend"])
def test_black_keeps_the_input_exactly_white_dreams(lite0, photo, tmp_path, mode):
    mask = save_mask(tmp_path / "mask.png", 0, 255)
    out = np.asarray(deepdream.dream(photo, backbone=lite0, mask=str(mask), octave_mode=mode, **TINY))
    src = np.asarray(Image.open(photo))
    assert np.array_equal(out[:, :32], src[:, :32])
    assert np.abs(out[:, 32:].astype(int) - src[:, 32:]).mean() > 2


def test_grey_blends_half_of_the_dream(lite0, photo, tmp_path):
    """No pixel is frozen by a grey mask: the result is the unmasked dream mixed half and half with the photo."""
    grey = save_mask(tmp_path / "grey.png", 128, 128)
    half = np.asarray(deepdream.dream(photo, backbone=lite0, mask=str(grey), **TINY)).astype(float)
    full = np.asarray(deepdream.dream(photo, backbone=lite0, **TINY)).astype(float)
    src = np.asarray(Image.open(photo)).astype(float)
    expected = src + (full - src) * 128 / 255
    assert np.abs(half - expected).max() <= 1.0  # uint8 rounding only


def test_mask_is_recorded_and_a_wrong_size_is_scaled(lite0, photo, tmp_path):
    mask = tmp_path / "small.png"
    small = np.zeros((12, 16), np.uint8)
    small[:, 8:] = 255
    Image.fromarray(small).save(mask)
    img = deepdream.dream(photo, backbone=lite0, mask=str(mask), **TINY)
    assert '"mask": "' in img.info["deepdream"]
    out, src = np.asarray(img), np.asarray(Image.open(photo))
    assert np.array_equal(out[:, :28], src[:, :28])


def test_cli_mask(photo, tmp_path):
    mask = save_mask(tmp_path / "mask.png", 0, 255)
    out = tmp_path / "out.png"
    r = run_cli("dream", photo, "-o", out, "--mask", mask, "--octaves", "1", "--iterations", "2", "-q")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(out))[:, :32], np.asarray(Image.open(photo))[:, :32])
    assert read_metadata(out)["mask"] == str(mask)


def test_mask_errors(lite0, tmp_path, photo):
    with pytest.raises(deepdream.ImageError, match="nowhere.png"):  # the CLI prints it as one line
        deepdream.dream(photo, backbone=lite0, mask=str(tmp_path / "nowhere.png"), **TINY)
    mask = save_mask(tmp_path / "mask.png", 0, 255)
    with pytest.raises(deepdream.SettingsError, match="does not apply to --init fourier"):
        deepdream.dream(None, backbone=lite0, mask=str(mask), init="fourier", iterations=2, size=(32, 32))
    settings = deepdream.Settings(mask=str(mask), **TINY)
    with (
        deepdream.Dreamer(lite0, Energy("blocks.4"), settings) as dreamer,
        pytest.raises(deepdream.SettingsError, match="does not apply masks"),
    ):
        dreamer.dream(torch.rand(1, 3, 48, 64))  # a front end that forgot the mask says so instead of ignoring it


def test_watch_sees_every_step_at_every_octave(lite0):
    seen = []
    settings = deepdream.Settings(octaves=2, iterations=3, jitter=0, seed=1)
    with deepdream.Dreamer(lite0, Energy("blocks.4"), settings) as dreamer:
        out = dreamer.dream(torch.rand(1, 3, 48, 64), watch=lambda x: seen.append((tuple(x.shape[-2:]), x.clone())))
    assert [s for s, _ in seen] == [(34, 46)] * 3 + [(48, 64)] * 3
    assert torch.equal(seen[-1][1], out)  # the last look is the result
