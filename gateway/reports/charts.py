"""Charts for the reports: matplotlib, written as SVG text to put inside the HTML (no files, no
display).  Text stays text in the SVG, so the reader's browser draws the Chinese with its own
CJK font."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")          # no display on a server; before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({
    "svg.fonttype": "none",
    "font.sans-serif": ["Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", "WenQuanYi Micro Hei",
                        "DejaVu Sans"],
    "axes.unicode_minus": False,
})
COLOURS = ("#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a")


def minutes_chart(labels: list[str], series: dict[str, list], deadlines: dict[str, float], title: str,
                  xlabel: str = "分钟（下达指令后）") -> str:
    """Horizontal bars: one group per label (team), one bar per series; dashed lines at deadlines."""
    n = max(1, len(labels))
    fig, ax = plt.subplots(figsize=(9, max(3.5, 1.5 + 0.22 * n * max(1, len(series)))))
    height = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        ys = [k + i * height for k in range(len(labels))]
        ax.barh(ys, [v if v is not None else 0 for v in values], height=height, label=name,
                color=COLOURS[i % len(COLOURS)])
        for y, v in zip(ys, values):
            if v is None:
                ax.text(0.2, y, "无", va="center", fontsize=8, color="#b71c1c")
    for j, (name, minutes) in enumerate(deadlines.items()):
        ax.axvline(minutes, color="#c62828", linestyle="--", linewidth=1.2)
        ax.text(minutes, -0.9 - 0.5 * j, f" {name} {minutes:g}分", color="#c62828", fontsize=8, va="bottom")
    ax.set_yticks([k + height * (len(series) - 1) / 2 for k in range(len(labels))])
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg")
    plt.close(fig)
    svg = out.getvalue()
    return svg[svg.index("<svg"):]          # inside HTML: no XML prolog nor DOCTYPE
