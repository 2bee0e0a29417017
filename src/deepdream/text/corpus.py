"""Dataset examples, the baseline a dream is compared against: every window of a text file, scored alike.

A window is `length` consecutive tokens of the file; it is scored as a dream of that length is (the model's
prefix before it, the objective at the same position, the same cross-entropy), so the two compare directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TextError
from .objectives import TextObjective
from .registry import LanguageModel
from .scoring import Scorer, cross_entropy
from .taps import TextTaps, resolve_tap

MAX_BYTES = 64 << 20  # a corpus is prose: a bigger file is a mistake (a binary, a dump) and would take hours


def read_corpus(path: str | Path) -> str:
    """The file's text; TextError when it is missing, not UTF-8, or empty."""
    path = Path(path)
    if not path.is_file():
        raise TextError(f"corpus file not found: {path}")
    if path.stat().st_size > MAX_BYTES:
        raise TextError(f"corpus {path} is larger than {MAX_BYTES >> 20} MiB: give a smaller text file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextError(f"corpus {path} is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x})") from None
    if not text.strip():
        raise TextError(f"corpus {path} is empty")
    return text


def windows(lm: LanguageModel, text: str, length: int, stride: int = 1, limit: int | None = None) -> torch.Tensor:
    """N x length token windows of `text` every `stride` tokens; at most `limit`, evenly spread over the text."""
    tokens = torch.tensor(lm.encode(text), dtype=torch.long)
    if len(tokens) < length:
        raise TextError(f"the corpus holds {len(tokens)} tokens, fewer than one window of {length}")
    found = tokens.unfold(0, length, stride)  # N x length
    if limit is not None and len(found) > limit:
        found = found[torch.linspace(0, len(found) - 1, limit).round().long()]
    return found


@dataclass
class CorpusScores:
    """Scored windows: tokens (N x L), activation (N x K: one column per objective), xent (N)."""

    tokens: torch.Tensor
    activation: torch.Tensor
    xent: torch.Tensor

    def top(self, n: int, column: int = 0) -> list[int]:
        """Indices of the n windows of highest activation."""
        return self.activation[:, column].topk(min(n, len(self.tokens))).indices.tolist()


def score_windows(
    lm: LanguageModel,
    objectives: list[TextObjective],
    tokens: torch.Tensor,
    position: int = -1,
    batch: int = 64,
    progress=None,
) -> CorpusScores:
    """Every objective on every window in one forward per batch (a benchmark scores many neurons at once)."""
    for objective in objectives:
        Scorer(lm, objective, position).check_length(tokens.shape[1])  # checks layers, widths and position
    taps = [resolve_tap(lm.model, name) for name in dict.fromkeys(t for o in objectives for t in o.taps)]
    prefix = torch.tensor(lm.prefix, dtype=torch.long)
    acts, xents = [], []
    with torch.inference_mode(), TextTaps(lm.model, taps) as recorder:
        for chunk in tokens.split(batch):
            full = torch.cat([prefix.expand(len(chunk), -1), chunk], dim=1).to(lm.device)
            logits = lm.model(input_ids=full).logits
            p = len(lm.prefix)
            recorded = {name: value[:, p:] for name, value in recorder.acts.items()}
            acts.append(torch.stack([o.values(recorded, logits[:, p:])[:, position] for o in objectives], 1).cpu())
            xents.append(cross_entropy(logits, chunk.to(lm.device), p).cpu())
            if progress is not None:
                progress.update(len(chunk))
    return CorpusScores(tokens, torch.cat(acts), torch.cat(xents))
