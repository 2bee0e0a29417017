"""The work folder: dreamed frames as numbered PNGs beside a manifest of the job, so a job can resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from .. import imagefiles, locks
from ..errors import OutputError, SettingsError


class FrameCache:
    """Dreamed frames as numbered PNGs in a work folder, with the description of the job that made them.

    A frame file appears only complete (atomic write), so after an interruption every file there is a
    finished frame. Only files this class names are ever deleted.
    """

    MANIFEST = "job.json"
    PATTERN = "frame_*.png"

    def __init__(self, folder: str | Path, job: dict):
        self.folder = Path(folder)
        self.job = json.loads(json.dumps(job))  # tuples -> lists, as read back from disk

    def path(self, index: int) -> Path:
        return self.folder / f"frame_{index:06d}.png"

    def has(self, index: int) -> bool:
        return self.path(index).is_file()

    def count(self) -> int:
        return len(list(self.folder.glob(self.PATTERN))) if self.folder.is_dir() else 0

    def manifest(self) -> dict | None:
        try:
            return json.loads((self.folder / self.MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def prepare(self, *, resume: bool, force: bool) -> int:
        """Make the folder ready; returns the number of finished frames that will be reused."""
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"work folder {self.folder} is a file")
        done = self.count()
        if done and not resume:
            if not force:
                raise OutputError(
                    f"work folder {self.folder} holds {done} dreamed frames of an earlier run: "
                    "add --resume to continue it, or --force to start again"
                )
            self.clear()
            done = 0
        if done:
            old = self.manifest()
            if old != self.job:
                diff = sorted(k for k in set(self.job) | set(old or {}) if (old or {}).get(k) != self.job.get(k))
                if "settings" in diff and old is not None:
                    s_old, s_new = old.get("settings", {}), self.job["settings"]
                    diff.remove("settings")
                    diff += sorted(k for k in set(s_old) | set(s_new) if s_old.get(k) != s_new.get(k))
                raise SettingsError(
                    f"cannot resume: the frames in {self.folder} were made with different "
                    f"{', '.join(diff) if old is not None else 'settings (no job.json)'}; "
                    "use the same options, another --work-dir, or --force without --resume to start again"
                )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.job, indent=2, sort_keys=True)
            imagefiles.atomic_write(self.folder / self.MANIFEST, lambda tmp: tmp.write_text(text))
        except OSError as exc:
            raise OutputError(f"cannot use work folder {self.folder}: {exc}") from exc
        return done

    def hold(self, output: Path) -> locks.Locks:
        """Lock the folder and the output for this job: another job on either refuses, so frames of two
        inputs never mix. The locks live beside the folder, so removing it keeps them."""
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot use work folder {self.folder}: {exc}") from exc
        return locks.hold(self.folder, output)

    def save(self, index: int, frame: np.ndarray) -> None:
        try:
            imagefiles.atomic_write(self.path(index), lambda tmp: Image.fromarray(frame).save(tmp, format="PNG"))
        except OSError as exc:
            raise OutputError(f"cannot write frame {self.path(index)}: {exc}") from exc

    def load(self, index: int) -> np.ndarray | None:
        """A finished frame, or None if it is missing or unreadable (then it is dreamed again)."""
        try:
            with Image.open(self.path(index)) as img:
                return np.asarray(img.convert("RGB")).copy()
        except (OSError, ValueError):
            return None

    def frames(self, count: int) -> Iterator[np.ndarray]:
        for i in range(count):
            frame = self.load(i)
            if frame is None:
                raise OutputError(f"frame {self.path(i)} disappeared from the work folder")
            yield frame

    def clear(self) -> None:
        for p in [*self.folder.glob(self.PATTERN), *self.folder.glob(".frame_*.png"), self.folder / self.MANIFEST]:
            p.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the frames and the manifest, and the folder if nothing else is in it."""
        self.clear()
        try:
            self.folder.rmdir()
        except OSError:
            pass


def default_work_dir(output: Path) -> Path:
    """Where frames are cached unless the user names a folder: next to the output, so --resume finds it."""
    return output.with_name(output.name + ".frames")
