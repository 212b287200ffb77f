"""Reliability diagrams (PNG): accuracy against confidence per equal-width bin.

Each panel has two parts. Above, one bar per non-empty bin at the bin's accuracy, the gap to
the bin's mean confidence shaded red (above the bar: overconfident; inside it:
underconfident) and the diagonal of perfect calibration. Below, the share of samples per bin,
with the mean confidence and the accuracy marked. ECE in the title is computed from the same
bins, so it equals the ``ece`` of results.json.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot), so nothing here changes
the process's matplotlib backend, and sizes are fixed: a panel is ``PANEL_INCHES`` at
``DPI`` (480 × 600 pixels); side-by-side figures are as many panels wide.
"""
from typing import Sequence, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from runtime.files import atomic_write

from .metrics import BinStats, expected_calibration_error

PANEL_INCHES = (4.8, 6.0)
DPI = 100


def panel_pixels(num_panels: int = 1) -> Tuple[int, int]:
    """(width, height) in pixels of a figure with ``num_panels`` panels side by side."""
    return (round(PANEL_INCHES[0] * DPI) * num_panels, round(PANEL_INCHES[1] * DPI))


def _draw_panel(fig: Figure, grid, column: int, stats: BinStats, title: str) -> None:
    """Draw one reliability panel (bars above, histogram below) into ``grid`` column."""
    top = fig.add_subplot(grid[0, column])
    bottom = fig.add_subplot(grid[1, column], sharex=top)
    width = 1.0 / stats.num_bins
    left = np.arange(stats.num_bins) * width
    filled = stats.counts > 0
    total = stats.counts.sum()

    top.plot([0, 1], [0, 1], linestyle="--", color="0.4", linewidth=1, label="perfect")
    top.bar(left[filled], stats.accuracy[filled], width=width, align="edge", color="#4c72b0",
            edgecolor="black", linewidth=0.6, label="accuracy")
    low = np.minimum(stats.accuracy[filled], stats.confidence[filled])
    high = np.maximum(stats.accuracy[filled], stats.confidence[filled])
    top.bar(left[filled], high - low, bottom=low, width=width, align="edge", color="#dd4444",
            alpha=0.35, edgecolor="#aa0000", hatch="//", linewidth=0.6, label="gap")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    ece = 100.0 * expected_calibration_error(stats)
    top.set_title(f"{title}\nECE {ece:.2f}% ({stats.num_bins} bins, n={int(total)})",
                  fontsize=10)
    top.tick_params(labelbottom=False)

    share = stats.counts / total if total else stats.counts
    bottom.bar(left, share, width=width, align="edge", color="0.6", edgecolor="black",
               linewidth=0.6)
    if total:
        mean_conf = float(np.nansum(stats.confidence * stats.counts) / total)
        accuracy = float(np.nansum(stats.accuracy * stats.counts) / total)
        bottom.axvline(mean_conf, color="#dd4444", linestyle="--", linewidth=1.2,
                       label=f"mean confidence {100 * mean_conf:.1f}%")
        bottom.axvline(accuracy, color="#4c72b0", linewidth=1.2,
                       label=f"accuracy {100 * accuracy:.1f}%")
        bottom.legend(loc="best", fontsize=7)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("share of samples")
    bottom.set_ylim(0, max(1e-9, float(share.max())) * 1.3 if total else 1)


def save_reliability_figure(panels: Sequence[Tuple[BinStats, str]], path: str) -> str:
    """Write ``(bins, title)`` panels side by side as a PNG at ``path`` (atomically)."""
    if not panels:
        raise ValueError("Nothing to draw: no panels given")
    fig = Figure(figsize=(PANEL_INCHES[0] * len(panels), PANEL_INCHES[1]), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, len(panels), height_ratios=(3, 1), hspace=0.08,
                            left=0.13 / len(panels), right=1 - 0.03 / len(panels),
                            top=0.9, bottom=0.09, wspace=0.3)
    for column, (stats, title) in enumerate(panels):
        _draw_panel(fig, grid, column, stats, title)

    with atomic_write(path) as staging:
        fig.savefig(staging, format="png", dpi=DPI)
    return path


def save_reliability_diagram(stats: BinStats, path: str, title: str) -> str:
    """One reliability panel as a PNG (480 × 600 pixels)."""
    return save_reliability_figure([(stats, title)], path)
