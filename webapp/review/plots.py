"""Server-side plots (matplotlib, SVG) of the statistics page. No JavaScript charting.

Figures are built with the object API (no pyplot): no global state, safe in threaded servers.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from webapp.review import stats

COLOURS = ["#7a4b2a", "#2f6f9f", "#1f7a4d", "#b3261e", "#9a6700", "#6a4c93", "#3a8d8d",
           "#c26d3a", "#8a8f99"]


def _figure(title: str, *, height: float = 3.0) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(7.5, height), dpi=100)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)
    return fig, ax


def _svg(fig: Figure) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg")
    return buffer.getvalue()


def _empty(ax: Axes, text: str = "No data in this period") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#6b7080")
    ax.set_xticks([])
    ax.set_yticks([])


def _dates(ax: Axes, x: np.ndarray) -> None:
    """At most ~8 labelled buckets (AutoDateLocator warns on short daily ranges)."""
    step = max(1, -(-len(x) // 8))
    ax.set_xticks(x[::step])
    # The whole period, even when only a few buckets have data.
    ax.set_xlim(x[0] - np.timedelta64(1, "D"), x[-1] + np.timedelta64(1, "D"))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))


def _stacked(series: stats.Series, title: str, window: stats.Window) -> bytes:
    fig, ax = _figure(title)
    if not series.lines:
        _empty(ax)
        return _svg(fig)
    x = np.array(series.buckets, dtype="datetime64[D]")
    width = 6 if window.weekly else 0.85
    bottom = np.zeros(len(x))
    ordered = sorted(series.lines.items(), key=lambda kv: -sum(kv[1]))
    for colour, (name, values) in zip(COLOURS * 3, ordered, strict=False):
        ax.bar(x, values, width=width, bottom=bottom, label=name, color=colour)
        bottom += np.asarray(values)
    ax.set_ylabel("bad cases", fontsize=8)
    ax.legend(fontsize=7, ncols=3, frameon=False, loc="upper left")
    _dates(ax, x)
    return _svg(fig)


def causes(window: stats.Window) -> bytes:
    per = "week" if window.weekly else "day"
    return _stacked(stats.bad_cases_by_cause(window), f"Bad cases by cause, per {per}", window)


def categories(window: stats.Window) -> bytes:
    per = "week" if window.weekly else "day"
    return _stacked(
        stats.bad_cases_by_category(window), f"Bad cases by category, per {per}", window
    )


def acceptance(window: stats.Window) -> bytes:
    series = stats.acceptance(window)
    fig, ax = _figure("Acceptance rate of decisions")
    if not any(series.lines["decisions"]):
        _empty(ax)
        return _svg(fig)
    x = np.array(series.buckets, dtype="datetime64[D]")
    for colour, name in zip(COLOURS, ("accepted a candidate", "accepted the first"), strict=False):
        values = np.asarray(series.lines[name], dtype=float)
        ax.plot(x, values, marker="o", markersize=3, label=name, color=colour)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(fontsize=7, frameon=False)
    _dates(ax, x)
    return _svg(fig)


def topk(window: stats.Window) -> bytes:
    rows = stats.accuracy_by_model_version(window)
    fig, ax = _figure("Top-1 / Top-4 of live decisions per model version",
                      height=max(2.4, 0.5 * len(rows) + 1.4))
    if not rows:
        _empty(ax)
        return _svg(fig)
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r.top1 for r in rows], height=0.38, label="Top-1", color=COLOURS[0])
    ax.barh(y + 0.2, [r.top4 for r in rows], height=0.38, label="Top-4", color=COLOURS[1])
    ax.set_yticks(y, [f"{r.model_version.split('|')[0][:34]} (n={r.decisions})" for r in rows],
                  fontsize=7)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return _svg(fig)


def latency(window: stats.Window) -> bytes:
    data = stats.match_latency(window)
    fig, ax = _figure("Match latency (upload to candidates)")
    if not any(data.count):
        _empty(ax)
        return _svg(fig)
    x = np.array(data.buckets, dtype="datetime64[D]")
    ax.plot(x, data.p50_ms, marker="o", markersize=3, label="median", color=COLOURS[0])
    ax.plot(x, data.p95_ms, marker="o", markersize=3, label="95th percentile", color=COLOURS[3])
    ax.set_ylabel("ms", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, frameon=False)
    _dates(ax, x)
    return _svg(fig)


PLOTS: dict[str, Callable[[stats.Window], bytes]] = {
    "causes": causes,
    "categories": categories,
    "acceptance": acceptance,
    "topk": topk,
    "latency": latency,
}
