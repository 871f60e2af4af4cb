"""The charts the report pages share (matplotlib): sorted per-class bars and a row-normalised confusion matrix."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import html as H


def sorted_bars(names: Sequence[str], series: dict[str, Sequence[float | None]], title: str, chart_id: str,
                xmax: float = 100.0) -> str:
    """Horizontal bars per class, one colour per series (values in %, None drawn as 0 and listed last), sorted
    by the first series, best first."""
    keys = list(series)
    order = sorted(range(len(names)), key=lambda i: (series[keys[0]][i] is None, -(series[keys[0]][i] or 0.0)))
    n = len(names)
    fig = H.figure(8, max(2.5, 0.24 * n + 1.2))
    ax = fig.add_subplot()
    y = np.arange(n)
    height = 0.8 / len(keys)
    for s, (key, colour) in enumerate(zip(keys, ("#3b75af", "#ef8636", "#55a868"))):
        values = [series[key][i] or 0.0 for i in order]
        ax.barh(y - 0.4 + height * (s + 0.5), values, height=height, label=key, color=colour)
    ax.set_yticks(y, [names[i] for i in order], fontsize=8 if n <= 40 else 6)
    ax.invert_yaxis()
    ax.set_xlim(0, xmax)
    ax.set_xlabel("%")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return H.img_tag(H.figure_uri(fig), title, "chart", id=chart_id)


def confusion_heatmap(counts: np.ndarray, names: Sequence[str], chart_id: str = "confusion-chart") -> str:
    """Rows (ground truth) normalised to 1; the shares written in the cells for up to 20 classes."""
    k = len(names)
    cm = counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.nan_to_num(cm / cm.sum(1, keepdims=True))
    side = min(24.0, max(4.5, 0.32 * k + 2.5))
    fig = H.figure(side, side * 0.9)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    size = 8 if k <= 30 else 5
    ax.set_xticks(range(k), names, rotation=90, fontsize=size)
    ax.set_yticks(range(k), names, fontsize=size)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (rows sum to 1)", fontsize=10)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return H.img_tag(H.figure_uri(fig), "confusion matrix", "chart", id=chart_id)


def counts_table(counts: np.ndarray, names: Sequence[str], unit: str = "pixel", max_classes: int = 60) -> str:
    """The confusion matrix's counts (a hover title on every cell), folded away; too many classes: a pointer to
    report.json."""
    k = len(names)
    if k > max_classes:
        return "<p>The counts of the confusion matrix are in <code>report.json</code>.</p>"
    head = "".join(f'<th title="{H.esc(n)}">{H.esc(n)}</th>' for n in names)
    totals = counts.sum(1)
    rows = []
    for i, n in enumerate(names):
        cells = []
        for j in range(k):
            c = int(counts[i, j])
            share = c / totals[i] if totals[i] else 0.0
            cells.append(f'<td title="{H.esc(n)} predicted as {H.esc(names[j])}: {c} {unit}{"" if c == 1 else "s"} '
                         f'({100 * share:.1f}% of the row)">{c}</td>')
        rows.append(f'<tr><th class="name">{H.esc(n)}</th>{"".join(cells)}</tr>')
    return (f"<details><summary>{unit} counts (rows: ground truth, columns: prediction)</summary>"
            f'<table id="confusion-counts"><tr><th class="name">gt \\ pred</th>{head}</tr>{"".join(rows)}'
            "</table></details>")
