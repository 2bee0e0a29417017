"""The figure people look at: the Pareto frontier, and the best texts with each token coloured by its value."""

from __future__ import annotations

from pathlib import Path

from .. import imagefiles
from .dreaming import DreamedText, TextDream

SHOWN = 6  # texts drawn under the curve


def _shown(result: TextDream) -> list[DreamedText]:
    """The chosen text, the start, and the frontier's most active texts."""
    picked = [result.chosen] + ([result.start] if result.start else [])
    for p in sorted(result.frontier, key=lambda p: -p.activation):
        if len(picked) >= SHOWN:
            break
        if p.tokens not in [q.tokens for q in picked]:
            picked.append(p)
    return picked


def _token_row(ax, fig, y: float, item: DreamedText, vmax: float, cmap) -> None:
    """Draw a text's tokens left to right, each on a box coloured by its value (0 white, vmax full)."""
    renderer = fig.canvas.get_renderer()
    x = 0.01
    width = ax.get_window_extent(renderer).width
    for piece, value in zip(item.pieces, item.per_token):
        label = piece.replace("\n", "\\n") or " "
        colour = cmap(max(0.0, min(1.0, value / vmax)) if vmax > 0 else 0.0)
        t = ax.text(
            x,
            y,
            label,
            fontsize=8,
            family="monospace",
            va="center",
            ha="left",
            transform=ax.transAxes,
            bbox=dict(boxstyle="square,pad=0.15", fc=colour, ec="none"),
        )
        x += t.get_window_extent(renderer).width / width + 0.004
        if x > 0.97:
            ax.text(x, y, "...", fontsize=8, va="center", transform=ax.transAxes)
            break
    ax.text(
        1.0,
        y,
        f"{item.activation:.2f} / {item.xent:.2f}",
        fontsize=7,
        va="center",
        ha="right",
        transform=ax.transAxes,
        color="0.3",
    )


def frontier_figure(result: TextDream, path: str | Path) -> Path:
    """Write a PNG: activation against cross-entropy (frontier, start, chosen) above the token-coloured texts."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    shown = _shown(result)
    fig, (curve, texts) = plt.subplots(
        2,
        1,
        figsize=(9, 3.2 + 0.42 * len(shown)),
        gridspec_kw={"height_ratios": [3, 0.5 * len(shown)]},
        constrained_layout=True,
    )
    xs, ys = [p.xent for p in result.frontier], [p.activation for p in result.frontier]
    curve.step(xs, ys, where="post", color="0.6", lw=1)
    curve.scatter(xs, ys, s=14, color="tab:blue", label="frontier", zorder=3)
    if result.start:
        curve.scatter(
            [result.start.xent], [result.start.activation], marker="s", color="tab:green", label="start", zorder=4
        )
    curve.scatter(
        [result.chosen.xent], [result.chosen.activation], marker="*", s=120, color="tab:red", label="shown", zorder=5
    )
    curve.set_xlabel("cross-entropy (lower reads more fluently)")
    curve.set_ylabel("activation")
    curve.set_title(f"{result.objective} on {result.settings.model}", fontsize=9)
    curve.legend(fontsize=7)
    texts.set_axis_off()
    vmax = max((v for p in shown for v in p.per_token), default=1.0)
    cmap = plt.get_cmap("Oranges")
    fig.canvas.draw()  # a renderer to measure token widths with
    for i, item in enumerate(shown):
        _token_row(texts, fig, 1 - (i + 0.5) / len(shown), item, vmax, cmap)
    try:
        imagefiles.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path
