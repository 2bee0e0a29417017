"""'Did you mean ...?' suffixes for errors about unknown names (models, layers, classes, architectures)."""

from __future__ import annotations

import difflib
from typing import Callable, Iterable


def did_you_mean(
    word: str, choices: Iterable[str], *, fallback: str = "", cutoff: float = 0.5, show: Callable[[str], str] = str
) -> str:
    """'; did you mean a, b?' for the closest choices, else `fallback` (e.g. '; choose from ...')."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=cutoff)
    return f"; did you mean {', '.join(map(show, close))}?" if close else fallback
