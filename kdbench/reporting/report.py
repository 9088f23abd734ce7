"""Reports from records: the leaderboard in every output format.

Everything here is a function of the records on disk (nothing else is reported), so any
output can be rebuilt at any time with ``kdbench report DIR...``. The leaderboard is
computed once by :mod:`kdbench.reporting.leaderboard`; :func:`publish` writes its formats.
``kdbench run`` writes the Markdown and CSV ones beside its records.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from kdbench.core.plugins import report_formats
from kdbench.records.store import write_text_atomic
from kdbench.reporting.board_model import Leaderboard
from kdbench.reporting.collect import collect
from kdbench.reporting.leaderboard import build
from kdbench.reporting.load import load_leaderboard
from kdbench.reporting.reference import default_reference_dir, load_reference
from kdbench.reporting.render_csv import cross_pair_csv, leaderboard_csv, provenance_csv
from kdbench.reporting.render_latex import latex
from kdbench.reporting.render_md import markdown

# Formats this module writes itself, with what each holds (``kdbench list formats``);
# plugins add more (kdbench.core.plugins.report_formats).
BUILTIN_FORMATS = {
    "md": "Markdown tables: the leaderboard, the methods x pairs matrix and provenance",
    "csv": "the leaderboard, cross-pair and provenance tables as CSV files",
    "latex": "the leaderboard as LaTeX tables (booktabs)",
    "html": "one page with the tables and the plots",
}
FORMATS = tuple(BUILTIN_FORMATS)

# The name older callers use for :func:`load_leaderboard`.
build_leaderboard = load_leaderboard


def all_formats() -> tuple[str, ...]:
    """Every format ``kdbench report`` knows: these and the ones plugins registered."""
    return (*FORMATS, *report_formats())


def render_format(board_set: Leaderboard, fmt: str, figs: dict | None = None) -> str:
    """One format as text (CSV: the leaderboard table only)."""
    if fmt == "md":
        return markdown(board_set)
    if fmt == "csv":
        return leaderboard_csv(board_set)
    if fmt == "latex":
        return latex(board_set)
    if fmt == "html":
        from kdbench.reporting.plots import figures
        from kdbench.reporting.site import page

        return page(board_set, figs if figs is not None else figures(board_set))
    registered = report_formats()
    if fmt in registered:
        return registered[fmt].render(board_set)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(all_formats())}")


def publish(
    board_set: Leaderboard, out_dir: Path, formats: Sequence[str] = FORMATS, plots: bool = True
) -> list[Path]:
    """Write each format (and the figures as PNG and SVG) into ``out_dir``."""
    out_dir = Path(out_dir)
    figs: dict = {}
    if plots:  # matplotlib is imported only when something is drawn
        from kdbench.reporting.plots import figures

        figs = figures(board_set)
    written = []
    files = {
        "md": {"leaderboard.md": lambda: markdown(board_set)},
        "csv": {
            "leaderboard.csv": lambda: leaderboard_csv(board_set),
            "cross_pair.csv": lambda: cross_pair_csv(board_set),
            "provenance.csv": lambda: provenance_csv(board_set),
        },
        "latex": {"leaderboard.tex": lambda: latex(board_set)},
        "html": {"leaderboard.html": lambda: render_format(board_set, "html", figs)},
    }
    for name, extra in report_formats().items():
        files.setdefault(name, {extra.filename: functools.partial(extra.render, board_set)})
    for fmt in formats:
        for name, make in files[fmt].items():
            write_text_atomic(out_dir / name, make())
            written.append(out_dir / name)
    if figs:
        from kdbench.reporting.plots import write_plots

        written += write_plots(out_dir / "plots", figs)
    return written


def write_run_tables(out_dir: Path, cell_ids: set[str]) -> str:
    """A run's leaderboard as Markdown and CSV beside its records; the Markdown table.

    Only this benchmark's cells count: records an earlier version of the file left in
    the same folder stay on disk but out of the table.
    """
    found = collect([out_dir], cells=cell_ids)
    board = build(found, load_reference(default_reference_dir()))
    publish(board, out_dir, ("md", "csv"), plots=False)
    return markdown(board)
