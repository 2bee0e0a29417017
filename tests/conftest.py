"""Shared fixtures: the real embedded network (it is small) and a synthetic photo."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepdream


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: tiny tensors on a small shared machine run slower with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def lite0() -> deepdream.Backbone:
    return deepdream.load_backbone("efficientnet_lite0", device="cpu")


def synthetic_photo(width: int = 160, height: int = 120, seed: int = 0) -> Image.Image:
    """A smooth picture with shapes: enough structure for a network to respond to."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    img = np.stack([0.5 + 0.4 * np.sin(6 * x + 1), 0.5 + 0.4 * np.cos(5 * y), 0.4 + 0.3 * x * y], -1)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(8, 25)
        mask = (np.mgrid[0:height, 0:width][1] - cx) ** 2 + (np.mgrid[0:height, 0:width][0] - cy) ** 2 < r * r
        img[mask] = rng.uniform(0, 1, 3)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")


@pytest.fixture
def photo_path(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    synthetic_photo().save(path)
    return path


@pytest.fixture
def photo_tensor() -> torch.Tensor:
    return deepdream.imagefiles.pil_to_tensor(synthetic_photo())[0]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `deepdream` CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "deepdream", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def free_port() -> int:
    """A loopback port nobody is listening on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(studio, **options):
    """Serve a studio on a free loopback port: (app, url without the trailing slash); the environment variables
    the launch sets are put back afterwards."""
    from deepdream.studio.app import launch

    saved = {k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED", "HF_HUB_OFFLINE")}
    app, url = launch(studio, port=free_port(), **options)
    try:
        yield app, url.rstrip("/")
    finally:
        app.close()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
