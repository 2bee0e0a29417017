"""Work locks: one file per target however the target is spelled ('.', '..', a linked folder, the root), one
run at a time, a dead run's lock taken over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from deepdream import locks
from deepdream.errors import OutputError


def test_lock_path_of_every_spelling(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path / "real")
    # '.' and '..' have no name of their own: "PosixPath('.') has an empty name" was a traceback
    assert locks.lock_path(".") == tmp_path / ".real.lock"
    assert locks.lock_path("..") == tmp_path.parent / f".{tmp_path.name}.lock"
    assert locks.lock_path("sub/..") == tmp_path / ".real.lock"
    assert locks.lock_path("/") == Path("/.deepdream.lock")
    # a file reached through a linked folder has the lock of the file in the real folder
    assert locks.lock_path(tmp_path / "link" / "out.png") == locks.lock_path(tmp_path / "real" / "out.png")
    assert locks.lock_path("out.png") == tmp_path / "real" / ".out.png.lock"
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(OutputError, match="cannot lock"):
        locks.lock_path(tmp_path / "loop" / "out.png")


def test_one_holder_and_a_dead_runs_lock_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with locks.acquire("."):
        assert (tmp_path.parent / f".{tmp_path.name}.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(OutputError, match="in use by another deepdream run"):
            locks.acquire(tmp_path)  # the same folder, spelled otherwise
    assert not (tmp_path.parent / f".{tmp_path.name}.lock").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    locks.lock_path(tmp_path / "out.png").write_text(dead.stdout)  # a killed run's lock
    with locks.hold(tmp_path / "out.png") as held:
        assert held.held[0].lock.read_text().strip() == str(os.getpid())


def test_cli_video_with_the_current_folder_as_work_dir(tmp_path):
    """`video in.mp4 --work-dir . --force` ended in "PosixPath('.') has an empty name" from lock_path."""
    with av.open(str(tmp_path / "in.mp4"), "w") as box:
        stream = box.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(2):
            frame = np.full((48, 64, 3), 60 * i + 40, np.uint8)
            box.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        box.mux(stream.encode(None))
    before = (tmp_path / "in.mp4").read_bytes()
    run = subprocess.run([sys.executable, "-m", "deepdream", "video", "in.mp4", "-o", "out.mp4", "--work-dir", ".",
                          "--force", "--octaves", "1", "--iterations", "1", "-q"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    with av.open(str(tmp_path / "out.mp4")) as box:
        assert sum(1 for _ in box.decode(video=0)) == 2
    assert (tmp_path / "in.mp4").read_bytes() == before
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.lock"))  # released
