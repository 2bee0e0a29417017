"""The studio's library folder: every result with its settings, masks, uploads, video jobs, and the
one place the studio writes to or serves from."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import imagefiles
from ..errors import OutputError, SettingsError
from ..settings import Settings, from_mapping, load_config

log = logging.getLogger(__name__)

# sub-folder -> what it holds
FOLDERS = {
    "results": "dreamed pictures and sheets, settings embedded (the gallery)",
    "masks": "painted masks, named by their content",
    "uploads": "clips and photos kept for background jobs",
    "videos": "finished videos and zoom loops",
    "sounds": "dreamed sounds (settings in their tags) and their before/after spectrograms",
    "jobs": "one JSON record per background job",
    "work": "frame caches of background jobs (resume after a restart)",
    "cache": "Gradio's upload folder",
    "logs": "studio.log: what the server did, with the traceback of every job that failed (not served)",
}


def default_folder() -> Path:
    """The user's data directory (XDG_DATA_HOME, else ~/.local/share) / deepdream / studio."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "deepdream" / "studio"


class Library:
    """A folder of results; paths it hands out always lie inside it."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser().resolve()
        try:
            for name in FOLDERS:
                (self.folder / name).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot use {self.folder} as the studio library: {exc}") from exc

    def sub(self, name: str) -> Path:
        """One of FOLDERS."""
        return self.folder / name

    def inside(self, path: str | Path) -> Path:
        """The resolved path if it lies in the library, else OutputError (no traversal, no symlinks out)."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.folder):
            raise OutputError(f"{path} is outside the studio library")
        return resolved

    def new_path(self, name: str, stem: str, suffix: str) -> Path:
        """A free, time-stamped file name in one of FOLDERS (nothing is created)."""
        folder = self.sub(name)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for i in range(1000):
            path = folder / f"{stamp}-{stem}{f'-{i}' if i else ''}{suffix}"
            if not path.exists():
                return path
        raise OutputError(f"no free file name in {folder}")

    def save(self, image: Image.Image, stem: str = "dream") -> Path:
        """Write a result PNG with its settings (from image.info) into results/, atomically."""
        path = self.new_path("results", stem, ".png")
        saved = imagefiles.save_image(image, path, metadata=image.info.get("deepdream"))
        log.debug("saved %s", saved)
        return saved

    def gallery(self) -> list[Path]:
        """Result pictures, newest first."""
        files = [p for p in self.sub("results").glob("*.png") if not p.name.startswith(".")]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)

    def settings_of(self, path: str | Path) -> Settings:
        """The settings a result was made with (sheets keep theirs under the same key)."""
        values = load_config(self.inside(path))
        try:
            return from_mapping(values)
        except SettingsError as exc:
            raise SettingsError(f"{Path(path).name} holds settings this version cannot read: {exc}") from exc

    def save_mask(self, mask: np.ndarray) -> Path:
        """A greyscale mask (H x W uint8, white = dream) as masks/<content hash>.png; same mask, same file."""
        digest = hashlib.sha256(mask.tobytes() + str(mask.shape).encode()).hexdigest()[:16]
        path = self.sub("masks") / f"{digest}.png"
        if not path.exists():
            imagefiles.save_image(Image.fromarray(mask, "L"), path)
        return path
