"""The ``local`` executor: cells run one after another in this process.

An executor class is built with its TOML parameters (``[executor] params = {...}``) and
has ``map(jobs, run)``, yielding each cell's record as soon as the cell ends. Executors
that set ``in_process = True`` receive a ``run`` that shows progress and reuses loaded
datasets; others receive :func:`kdbench.cell.run_cell` itself, which pickles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kdbench import hookimpl


class LocalExecutor:
    """Run cells sequentially in this process (the default)."""

    in_process = True

    def map(
        self, jobs: Iterable[Any], run: Callable[[Any], dict[str, Any]]
    ) -> Iterator[dict[str, Any]]:
        for job in jobs:
            yield run(job)


@hookimpl
def register_executors(register):
    register("local", LocalExecutor)
