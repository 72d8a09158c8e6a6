"""A report's files: the timeline plot and the per-night table, shared by ``rucio-magic report`` and the demo."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from rucio_magic_ext.report import nights, plot, timeline
from rucio_magic_ext.report.rows import FileRow

TABLE_FORMATS = {".csv": nights.to_csv, ".md": nights.to_markdown}


def check_table_path(path: Path) -> None:
    """Fail before any work when the table's suffix names no format."""
    if path.suffix.lower() not in TABLE_FORMATS:
        raise ValueError(f"{path}: the table's suffix says its format: .csv or .md, not {path.suffix or 'none'!r}")


def check_plot_path(path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: the plot is a PNG, its name must end in .png")


def render_table(rows: Sequence[FileRow], path: Path | None = None) -> str:
    """The per-night table in the format ``path``'s suffix names; Markdown without a path."""
    render = TABLE_FORMATS[path.suffix.lower()] if path else nights.to_markdown
    return render(nights.nights(rows))


def write_table(rows: Sequence[FileRow], path: Path) -> Path:
    check_table_path(path)
    path.write_text(render_table(rows, path))
    return path


def time_range(since: datetime, until: datetime) -> str:
    """The range as a title says it: the date once when both ends fall on the same day."""
    end = f"{until:%H:%M}" if since.date() == until.date() else f"{until:%Y-%m-%d %H:%M}"
    return f"{since:%Y-%m-%d %H:%M} to {end} UTC"


def write_plot(rows: Sequence[FileRow], path: Path, since: datetime, until: datetime, what: str = "") -> Path:
    """The timeline of ``rows`` over [since, until]; ``what`` names them in the title (default: their RSEs)."""
    check_plot_path(path)
    series = timeline.timeline(rows, timeline.sample_instants(rows, since, until))
    rses = sorted({row.rse for row in rows})
    what = what or ", ".join(rses) or "every source RSE"
    subtitle = (
        f"{len(rows)} files, {nights.size_text(sum(row.size for row in rows))}; "
        f"{sum(row.deleted_at is not None and row.deleted_at <= until for row in rows)} deleted at source"
    )
    title = f"MAGIC flow from {what}: {time_range(since, until)}"
    return plot.draw(series, path, title, subtitle if rows else "")
