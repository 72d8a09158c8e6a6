"""The timeline as a PNG: one step line per series, on a UTC time axis. matplotlib is imported only here, when a
plot is drawn, and draws on a bare Agg canvas, without pyplot: no display and no global backend."""

from __future__ import annotations

from datetime import timezone
from pathlib import Path
from typing import Any

from rucio_magic_ext.report.timeline import AT_DESTINATION, AT_SOURCE, DELETED, REGISTERED, REPLICATING, Timeline

# Colour, line style, width, and drawing order: the cumulative series are dashed and drawn last, so that they
# stay visible where they run along a solid line (in a finished night, every series but "replicating" ends equal).
STYLE = {
    AT_SOURCE: ("#d95f02", "-", 2.4, 2),
    REGISTERED: ("#7570b3", "--", 1.8, 4),
    REPLICATING: ("#1f78b4", "-", 2.0, 2),
    AT_DESTINATION: ("#1b9e77", "-", 2.4, 2),
    DELETED: ("#333333", ":", 2.2, 5),
}
SIZE_INCHES, DPI = (10.0, 5.0), 100


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed: the report extra brings it."""


def _matplotlib() -> tuple[Any, Any, Any, Any]:
    try:
        from matplotlib import dates, ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlotUnavailable(f"the plot needs matplotlib ({error}): pip install 'rucio-magic-ext[report]'") from error
    return Figure, FigureCanvasAgg, dates, ticker


def draw(timeline: Timeline, path: Path, title: str, subtitle: str = "") -> Path:
    """Write the figure to ``path`` (PNG); an empty timeline gives a figure that says "no files"."""
    figure_type, canvas_type, dates, ticker = _matplotlib()
    figure = figure_type(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    canvas_type(figure)
    axes = figure.add_subplot()
    instants = timeline.instants
    if timeline.empty:
        axes.text(0.5, 0.5, "no files", transform=axes.transAxes, ha="center", va="center", fontsize=18, color="0.5")
        axes.set_ylim(0, 1)
    else:
        for name, values in timeline.series.items():
            colour, line, width, order = STYLE[name]
            axes.step(instants, values, where="post", label=name, color=colour, ls=line, lw=width, zorder=order)
        axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=10)
    if len(instants) > 1 and instants[0] < instants[-1]:
        axes.set_xlim(instants[0], instants[-1])
    locator = dates.AutoDateLocator(tz=timezone.utc)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=timezone.utc))
    axes.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel("files")
    axes.grid(True, color="0.9")
    figure.suptitle(title, fontsize=13)
    if subtitle:
        axes.set_title(subtitle, fontsize=10, color="0.3")
    figure.savefig(path, format="png")
    return path
