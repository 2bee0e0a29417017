"""The batch manifest: one SQLite row per input (settings hash, status, seconds, output, error).

SQLite commits are atomic, so a batch killed at any moment leaves a readable manifest; rows still
'running' then are the interrupted items a re-run redoes. Only the driver process writes it.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import OutputError
from .plan import BatchItem

MANIFEST_NAME = "manifest.sqlite"
RUNNING, DONE, FAILED = "running", "done", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    relpath TEXT PRIMARY KEY, source TEXT NOT NULL, kind TEXT NOT NULL, output TEXT NOT NULL,
    settings_hash TEXT NOT NULL, stamp TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL,
    seconds REAL, error TEXT, worker TEXT, attempts INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Record:
    """One manifest row."""

    relpath: str
    source: str
    kind: str
    output: str
    settings_hash: str
    stamp: str
    seed: int
    status: str
    seconds: float | None
    error: str | None
    worker: str | None
    attempts: int
    updated: float

    def matches(self, item: BatchItem) -> bool:
        """Same settings and the same input file as the item: its outcome still holds."""
        return self.settings_hash == item.settings_hash and self.stamp == item.stamp


@dataclass(frozen=True)
class ItemResult:
    """What a worker reports for one item."""

    relpath: str
    ok: bool
    seconds: float
    error: str | None = None
    worker: str = ""
    data: bytes | None = None  # the encoded output, when the worker cannot write to the output folder


class Manifest:
    """The manifest of one output folder (a context manager)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise OutputError(f"cannot use the manifest {self.path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get(self, relpath: str) -> Record | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM items WHERE relpath = ?", (relpath,)).fetchone()
        return Record(*row) if row else None

    def records(self) -> list[Record]:
        return [Record(*row) for row in self.db.execute(f"SELECT {_COLUMNS} FROM items ORDER BY relpath")]

    def started(self, item: BatchItem, worker: str = "") -> None:
        """Mark an item running (an interrupted batch leaves it so, and a re-run redoes it)."""
        previous = self.get(item.relpath)
        attempts = (previous.attempts if previous is not None and previous.matches(item) else 0) + 1
        row = (item.relpath, str(item.source), item.kind, str(item.output), item.settings_hash, item.stamp,
               item.seed, RUNNING, None, None, worker, attempts, time.time())  # fmt: skip
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO items ({_COLUMNS}) VALUES ({_MARKS})", row)

    def finished(self, result: ItemResult) -> None:
        status = DONE if result.ok else FAILED
        with self.db:
            self.db.execute(
                "UPDATE items SET status = ?, seconds = ?, error = ?, worker = ?, updated = ? WHERE relpath = ?",
                (status, result.seconds, result.error, result.worker, time.time(), result.relpath),
            )


_COLUMNS = ", ".join(f.name for f in fields(Record))
_MARKS = ", ".join("?" for _ in fields(Record))
