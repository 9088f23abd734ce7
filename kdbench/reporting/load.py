"""A results folder (or several) read into one :class:`Leaderboard`: what ``kdbench report``
shows, for a command plugin to use without running ``kdbench report`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kdbench.core.errors import KdbenchError
from kdbench.reporting.board_model import Leaderboard
from kdbench.reporting.collect import collect_or_fail
from kdbench.reporting.leaderboard import build
from kdbench.reporting.reference import default_reference_dir, load_reference

Location = str | Path


def load_leaderboard(
    results_dir: Location | Sequence[Location],
    reference: Location | None = None,
    *,
    use_reference: bool = True,
    pool: bool = False,
) -> Leaderboard:
    """The leaderboard of the records under ``results_dir`` (a results folder, its
    ``records/`` folder or a record file; or a list of them, each experiment counted once).

    Published numbers come from ``reference`` (default: ``results/reference``) unless
    ``use_reference`` is false; ``pool`` puts a method's configurations into one row. A
    location that does not exist, or holds no record, raises :class:`KdbenchError`.
    """
    single = isinstance(results_dir, str | Path)
    locations = [Path(p) for p in ([results_dir] if single else results_dir)]
    for location in locations:
        if not location.exists():
            raise KdbenchError(f"{location}: no such results folder or record file")
    found = collect_or_fail(locations)
    if not use_reference:
        return build(found, [], pool=pool)
    rows = load_reference(Path(reference) if reference else default_reference_dir())
    return build(found, rows, pool=pool)
