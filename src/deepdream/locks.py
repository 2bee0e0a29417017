"""Work locks: one run at a time writes an output file or works in a folder.

A lock is a small file beside the thing it guards (`.NAME.lock`, so removing a work folder never
removes its lock) holding the owner's pid. It is created atomically (O_CREAT | O_EXCL): of two runs
that start at once exactly one gets it, and the other refuses with one line. A lock whose pid is no
longer running (a killed job) is stale and taken over. Locks are advisory: they guard deepdream
runs against each other on one machine, not against other programs (see docs/safety.md).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import OutputError

# a lock file is empty only between its creation and the write of the pid; an empty one older than
# this was left by a run killed in that instant
EMPTY_GRACE_SECONDS = 5.0


def lock_path(path: str | Path) -> Path:
    """Where the lock of `path` lives: beside it, hidden (inside the root folder, which has no name).

    The path is made absolute first ('.', '..' and 'dir/..' have no name of their own) and its folder
    resolved, so that two spellings of one target share one lock.
    """
    path = Path(os.path.abspath(path))
    if not path.name:
        return path / ".deepdream.lock"
    try:
        return path.parent.resolve() / f".{path.name}.lock"
    except (RuntimeError, OSError) as exc:  # a link loop (Python 3.11 raises RuntimeError)
        raise OutputError(f"cannot lock {path}: {exc}") from None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user counts: it may be a run too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def _create(lock: Path) -> bool:
    """Create the lock file with our pid; False if it exists already."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot create the lock {lock}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    return True


def owner(lock: Path) -> int | None:
    """The pid in a lock file; None when it is unreadable, empty or gone."""
    try:
        return int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stale(lock: Path, pid: int | None) -> bool:
    if pid is not None:
        return not pid_alive(pid)
    try:
        return time.time() - lock.stat().st_mtime > EMPTY_GRACE_SECONDS
    except OSError:
        return True  # gone meanwhile: nothing to wait for


def _take_over(lock: Path, pid: int | None) -> None:
    """Remove a stale lock, under a guard file so that of two runs taking it over only one removes it
    (the other could otherwise remove the fresh lock the first has just made)."""
    guard = lock.with_name(lock.name + ".takeover")
    if not _create(guard):
        if _stale(guard, owner(guard)):
            guard.unlink(missing_ok=True)
        return
    try:
        if owner(lock) == pid:  # still the stale lock, not a new one
            lock.unlink(missing_ok=True)
    finally:
        guard.unlink(missing_ok=True)


class Lock:
    """A held lock; `release()` removes the file if it is still ours."""

    def __init__(self, path: Path, lock: Path):
        self.path, self.lock = path, lock

    def release(self) -> None:
        if self.lock is not None and owner(self.lock) == os.getpid():
            self.lock.unlink(missing_ok=True)
        self.lock = None

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(path: str | Path, what: str = "") -> Lock:
    """Lock `path` for this process, taking over a stale lock; OutputError when another run holds it.

    `what` names the thing in the refusal (default: the path itself).
    """
    path = Path(path)
    lock = lock_path(path)
    for _ in range(5):
        if _create(lock):
            return Lock(path, lock)
        pid = owner(lock)
        if not _stale(lock, pid):
            holder = f"pid {pid}" if pid is not None else "starting up"
            raise OutputError(f"{what or path} is in use by another deepdream run ({holder}; lock {lock})")
        _take_over(lock, pid)
    raise OutputError(f"cannot lock {what or path}: its lock {lock} keeps changing hands")


class Locks:
    """Several locks held together, released in reverse order."""

    def __init__(self, held: list[Lock]):
        self.held = held

    def release(self) -> None:
        while self.held:
            self.held.pop().release()

    def __enter__(self) -> "Locks":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hold(*paths: str | Path) -> Locks:
    """Lock every path, all or none (a refusal releases those already taken): `with hold(output): ...`."""
    held: list[Lock] = []
    try:
        for path in paths:
            held.append(acquire(path))
    except BaseException:
        Locks(held).release()
        raise
    return Locks(held)
