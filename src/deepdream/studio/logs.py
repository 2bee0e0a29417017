"""Where the studio's log goes: `LIBRARY/logs/studio.log`, rotated, with the traceback of every job that
failed (the page shows one line). The front end that serves the studio turns it on for its lifetime."""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
from pathlib import Path
from typing import Iterator

from ..runtime import package_log
from .library import Library

log = logging.getLogger(__name__)

LOG_NAME = "studio.log"
LOG_BYTES = 5 * 1024**2  # per file; with BACKUPS older files the log stays under 20 MB however long it runs
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


def log_path(library: Library) -> Path:
    return library.sub("logs") / LOG_NAME


@contextlib.contextmanager
def file_logging(library: Library, level: int = logging.INFO) -> Iterator[Path]:
    """Send the `deepdream` loggers' records at `level` and above to the library's log file while inside;
    yields its path."""
    path = log_path(library)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_BYTES, backupCount=BACKUPS, encoding="utf-8", delay=True
    )  # no file until there is something to say
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(FORMAT))
    with package_log(handler):
        log.debug("studio log opened (library %s)", library.folder)
        try:
            yield path
        finally:
            log.debug("studio log closed")
