"""The batch manifest: one SQLite row per input (settings hash, status, seconds, output, error).

SQLite commits are atomic, so a batch killed at any moment leaves a readable manifest; rows still
'running' then are the interrupted items a re-run redoes. Only the driver process writes it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

from ..errors import OutputError
from .plan import BatchItem

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.sqlite"
# written into every manifest's meta table; a manifest with another mark was written by another version
FORMAT_KEY, FORMAT = "format", "deepdream-batch-1"
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
    trace: str | None = None  # the traceback of a failure, for the batch's log file


class Manifest:
    """The manifest of one output folder (a context manager).

    Opening checks that the file is a manifest this version wrote (its tables and columns, its format
    mark); a row is checked as it is read. Anything else is refused with one OutputError, never used
    half-understood. Text that is not UTF-8 (file names) is stored with its bad bytes as backslash escapes.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        try:
            if read_only:
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            else:
                self.db = sqlite3.connect(self.path)
        except (sqlite3.Error, ValueError) as exc:
            raise OutputError(f"cannot open the manifest {self.path}: {exc}") from None
        try:
            self._check(read_only)
        except BaseException:
            self.db.close()
            raise

    def _check(self, read_only: bool) -> None:
        with self._sql("read"):
            names = [name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            tables = {name: [c for (c,) in self.db.execute("SELECT name FROM pragma_table_info(?)", (name,))]
                      for name in names}  # fmt: skip
        if tables and set(tables) != set(_TABLES):
            self._refuse(f"it holds the tables {', '.join(sorted(tables))}")
        for name, columns in tables.items():
            if columns != _TABLES[name]:
                self._refuse(f"its {name} table has the columns {', '.join(columns)}")
        if tables:
            mark = self.meta(FORMAT_KEY)
            if mark is not None and mark != FORMAT:
                self._refuse(f"its format is {mark!r}, this version writes {FORMAT!r}")
        if not read_only:
            with self._sql("create"), self.db:
                self.db.executescript(_SCHEMA)
                self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (FORMAT_KEY, FORMAT))

    def _refuse(self, why: str) -> None:
        log.debug("manifest %s refused: %s", self.path, why)
        raise OutputError(f"{self.path} is not a batch manifest this deepdream version can use ({why}): "
                          "remove it or choose another output folder")  # fmt: skip

    @contextlib.contextmanager
    def _sql(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise OutputError(f"cannot {doing} the manifest {self.path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def meta(self, key: str) -> str | None:
        with self._sql("read"):
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None and not isinstance(row[0], str):
            self._refuse(f"its {key} is {row[0]!r}")
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._sql("write"), self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text(value)))

    def get(self, relpath: str) -> Record | None:
        with self._sql("read"):
            row = self.db.execute(f"SELECT {_COLUMNS} FROM items WHERE relpath = ?", (text(relpath),)).fetchone()
        return self._record(row) if row else None

    def records(self) -> list[Record]:
        with self._sql("read"):
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM items ORDER BY relpath").fetchall()
        return [self._record(row) for row in rows]

    def _record(self, row: tuple) -> Record:
        """A row as a Record, each value of its column's type (SQLite itself would store any type anywhere)."""
        for f, value in zip(fields(Record), row):
            if not isinstance(value, _TYPES[f.name]) or isinstance(value, bool):
                self._refuse(f"the row of {row[0]!r} has {f.name} = {value!r}")
        if row[7] not in (RUNNING, DONE, FAILED):
            self._refuse(f"the row of {row[0]!r} has the status {row[7]!r}")
        return Record(*row)

    def started(self, item: BatchItem, worker: str = "") -> None:
        """Mark an item running (an interrupted batch leaves it so, and a re-run redoes it)."""
        previous = self.get(item.relpath)
        attempts = (previous.attempts if previous is not None and previous.matches(item) else 0) + 1
        row = (text(item.relpath), text(str(item.source)), item.kind, text(str(item.output)), item.settings_hash,
               item.stamp, item.seed, RUNNING, None, None, text(worker), attempts, time.time())  # fmt: skip
        with self._sql("write"), self.db:
            self.db.execute(f"INSERT OR REPLACE INTO items ({_COLUMNS}) VALUES ({_MARKS})", row)

    def finished(self, result: ItemResult) -> None:
        status = DONE if result.ok else FAILED
        error = None if result.error is None else text(result.error)
        with self._sql("write"), self.db:
            self.db.execute(
                "UPDATE items SET status = ?, seconds = ?, error = ?, worker = ?, updated = ? WHERE relpath = ?",
                (status, result.seconds, error, text(result.worker), time.time(), text(result.relpath)),
            )


def text(value: str) -> str:
    """`value` as storable UTF-8: bytes of a non-UTF-8 file name (surrogate escapes) become backslash escapes."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_COLUMNS = ", ".join(f.name for f in fields(Record))
_MARKS = ", ".join("?" for _ in fields(Record))
_TABLES = {"items": [f.name for f in fields(Record)], "meta": ["key", "value"]}
_TYPES = {name: (str,) for name in _TABLES["items"]} | {
    "seed": (int,), "attempts": (int,), "seconds": (int, float, type(None)), "updated": (int, float),
    "error": (str, type(None)), "worker": (str, type(None)),
}  # fmt: skip
