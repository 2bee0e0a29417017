"""Confusion matrices, training curves and run comparisons: pure functions first, figures second.

Figures are built on matplotlib's object API with the Agg canvas, so nothing touches pyplot's global
state or needs a display.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import imagefiles
from ..errors import DeepDreamError


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """K x K counts: row = true class, column = predicted class."""
    targets = torch.as_tensor(targets, dtype=torch.long).flatten()
    predictions = torch.as_tensor(predictions, dtype=torch.long).flatten()
    if targets.shape != predictions.shape:
        raise ValueError(f"{targets.numel()} targets but {predictions.numel()} predictions")
    return torch.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes).view(
        num_classes, num_classes
    )


def accuracy(cm: torch.Tensor) -> float:
    """Fraction on the diagonal of a confusion matrix."""
    total = int(cm.sum())
    return float(cm.diag().sum()) / total if total else 0.0


def recall_per_class(cm: torch.Tensor) -> list[float]:
    """For each true class, the fraction predicted correctly (NaN-free: 0 for an absent class)."""
    rows = cm.sum(1).clamp(min=1)
    return (cm.diag().double() / rows).tolist()


def format_confusion(cm: torch.Tensor, classes: Sequence[str]) -> str:
    """A plain-text confusion matrix with per-class recall, for terminals and logs."""
    width = max(8, *(len(c) for c in classes)) + 1
    lines = ["true \\ pred".ljust(width) + "".join(c.rjust(width) for c in classes) + "recall".rjust(9)]
    for name, row, recall in zip(classes, cm.tolist(), recall_per_class(cm)):
        lines.append(name.ljust(width) + "".join(str(v).rjust(width) for v in row) + f"{recall:9.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunRecord:
    """One training run as recorded in its folder's metrics.json."""

    path: Path
    metrics: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def classes(self) -> list[str]:
        return list(self.metrics.get("classes", []))

    @property
    def final(self) -> dict[str, Any]:
        """Evaluation of the best checkpoint: on the test folder when there is one, else validation."""
        return self.metrics.get("test") or self.metrics.get("best") or {}


def load_run(path: str | Path) -> RunRecord:
    """Read a run folder written by `deepdream train` (its metrics.json)."""
    path = Path(path)
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise DeepDreamError(f"{path} is not a training run (no metrics.json)")
    try:
        metrics = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise DeepDreamError(f"cannot read {file}: {exc}") from exc
    if not isinstance(metrics, dict) or "epochs" not in metrics:
        raise DeepDreamError(f"{file} is not a deepdream metrics file")
    wrong = _wrong_field(metrics)
    if wrong:
        raise DeepDreamError(f"{file} is not a valid metrics file: {wrong}")
    return RunRecord(file.parent, metrics)


COUNT_LIMIT = 2**53  # a count above this is no longer exact in a float (and no data set holds it)
SECONDS_LIMIT = 1e9  # about 32 years


def _is_number(v: Any) -> bool:
    """A finite real number: NaN, inf and bools are not."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# what each number the report reads must be: (test, what the message says it should be)
_COUNT = (lambda v: _is_number(v) and v == int(v) and 0 <= v < COUNT_LIMIT, "a count (a whole number >= 0)")
_SHARE = (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
_LOSS = (lambda v: _is_number(v) and v >= 0, "a finite number >= 0")
_SECONDS = (lambda v: _is_number(v) and 0 <= v <= SECONDS_LIMIT, f"a number of seconds in [0, {SECONDS_LIMIT:g}]")
_EPOCH_FIELDS = {
    "epoch": _COUNT,
    "val_accuracy": _SHARE,
    "val_loss": _LOSS,
    "train_accuracy": _SHARE,
    "train_loss": _LOSS,
}
_FINAL_FIELDS = {"accuracy": _SHARE, "epoch": _COUNT, "images": _COUNT}


def _wrong_field(m: dict[str, Any]) -> str | None:
    """The first field the report reads that has the wrong type or an impossible value (a hand-edited or
    foreign file: NaN, 1e308, a negative count), or None."""
    epochs, classes = m["epochs"], m.get("classes", [])
    if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
        return "epochs should be a list of records"
    for i, e in enumerate(epochs):
        for key, (ok, wanted) in _EPOCH_FIELDS.items():
            if (key in e or key in ("epoch", "val_accuracy")) and not ok(e.get(key)):
                return f"epochs[{i}].{key} should be {wanted}"
    if not isinstance(m.get("config", {}), dict):
        return "config should be a table"
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        return "classes should be a list of names"
    for key in ("train_seconds", "train_cpu_seconds"):
        if key in m and not _SECONDS[0](m[key]):
            return f"{key} should be {_SECONDS[1]}"
    for key in ("best", "test"):
        part = m.get(key, {})
        if not isinstance(part, dict):
            return f"{key} should be a table"
        for field, (ok, wanted) in _FINAL_FIELDS.items():
            if field in part and not ok(part[field]):
                return f"{key}.{field} should be {wanted}"
        if "split" in part and not isinstance(part["split"], str):
            return f"{key}.split should be a name"
        cm = part.get("confusion_matrix")
        if cm is not None and not (
            isinstance(cm, list) and len(cm) == len(classes)
            and all(isinstance(r, list) and len(r) == len(cm) and all(_COUNT[0](v) for v in r) for r in cm)
        ):  # fmt: skip
            return f"{key}.confusion_matrix should be a square table of counts, one row per class"
        if cm is not None and not ("accuracy" in part and "split" in part):
            return f"{key} has a confusion matrix but no accuracy and split"
    return None


def comparison_table(runs: Sequence[RunRecord]) -> str:
    """A markdown table: one row per run with its architecture, accuracy and wall time."""
    header = "| run | arch | pretrained | epochs | best epoch | accuracy | evaluated on | train time | train CPU time |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for run in runs:
        m = run.metrics
        cfg = m.get("config", {})
        final = run.final
        lines.append(
            f"| {run.name} | {cfg.get('arch', '?')} | {'yes' if cfg.get('pretrained') else 'no'} "
            f"| {len(m.get('epochs', []))} | {m.get('best', {}).get('epoch', '-')} "
            f"| {final.get('accuracy', float('nan')):.4f} "
            f"| {final.get('split', '-')} ({final.get('images', '?')} images) "
            f"| {_duration(m.get('train_seconds', 0.0))} | {_duration(m.get('train_cpu_seconds', 0.0))} |"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if not _is_number(seconds):
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# ---------------------------------------------------------------- figures


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def draw_confusion(ax, cm: torch.Tensor, classes: Sequence[str], title: str) -> None:
    """Counts on a blue scale, row-normalised so that the colour is the recall."""
    rows = cm.sum(1, keepdim=True).clamp(min=1)
    ax.imshow((cm.double() / rows).numpy(), cmap="Blues", vmin=0, vmax=1)
    k = len(classes)
    ax.set_xticks(range(k), classes, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(k):
        for j in range(k):
            frac = float(cm[i, j]) / float(rows[i])
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color="white" if frac > 0.5 else "black")


def confusion_figure(cm: torch.Tensor, classes: Sequence[str], title: str = "confusion matrix"):
    k = len(classes)
    fig = _figure(2.5 + 0.6 * k, 2.2 + 0.6 * k)
    draw_confusion(fig.add_subplot(), cm, classes, title)
    fig.tight_layout()
    return fig


def curves_figure(epochs: Sequence[dict[str, Any]], title: str = ""):
    """Loss and accuracy per epoch, training next to validation."""
    fig = _figure(9, 3.4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    x = [e["epoch"] for e in epochs]
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        ax_loss.plot(x, [e[key] for e in epochs], marker="o", label=label)
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
        ax_acc.plot(x, [e[key] for e in epochs], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def comparison_figure(runs: Sequence[RunRecord]):
    """Top: validation accuracy per epoch of every run. Bottom: each run's final confusion matrix."""
    n = len(runs)
    fig = _figure(max(6.0, 3.6 * n), 7.5)
    grid = fig.add_gridspec(2, n, height_ratios=(1, 1.15))
    ax = fig.add_subplot(grid[0, :])
    for run in runs:
        epochs = run.metrics["epochs"]
        final = run.final.get("accuracy", float("nan"))
        ax.plot(
            [e["epoch"] for e in epochs],
            [e["val_accuracy"] for e in epochs],
            marker="o",
            label=f"{run.name} ({final:.3f})",
        )
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="accuracy per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    for i, run in enumerate(runs):
        cm = run.final.get("confusion_matrix")
        sub = fig.add_subplot(grid[1, i])
        if cm is None:
            sub.set_axis_off()
            continue
        split = run.final.get("split", "")
        draw_confusion(sub, torch.tensor(cm), run.classes, f"{run.name}: {split} acc {run.final['accuracy']:.3f}")
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path) -> Path:
    """Write a figure atomically; the format follows the extension."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    imagefiles.atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt))
    return path
