"""How many CPU threads torch uses: one policy for every way kdbench trains.

The policy: ``--threads`` on the command line, else the executor's own ``threads``,
else the usable cores divided by the workers that train at once (one for ``local``
and ``teachers train``). Each process sets it before it trains and records it in
``provenance.threads``. More threads than free cores make training many times slower
(every thread waits for the slowest), so a busy machine is reported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, as Slurm and taskset set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(workers: int = 1) -> int:
    """The usable cores shared out among ``workers`` processes training at once."""
    return max(1, usable_cores() // max(1, workers))


def resolve_threads(given: int | None = None, *, workers: int = 1) -> int:
    """``given`` when set, else :func:`default_threads`."""
    return given if given else default_threads(workers)


def set_threads(threads: int) -> None:
    """Use ``threads`` here and in processes started from here."""
    import torch  # here: the executor API imports this module, and status loads it

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


@contextmanager
def using_threads(threads: int | None) -> Iterator[None]:
    """``threads`` torch threads for the block (unchanged when None); restored after."""
    if not threads:
        yield
        return
    import torch

    saved, saved_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    set_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
        if saved_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved_env


def oversubscribed(
    threads: int, *, load: float | None = None, cores: int | None = None
) -> str | None:
    """A warning when the load already on the machine plus ``threads`` exceeds its cores."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this system
            return None
    cores = cores or usable_cores()
    if load + threads <= cores + 0.5:
        return None
    return (
        f"kdbench: warning: load average {load:.1f} on {cores} cores, and this run adds "
        f"{threads} training thread(s): the machine is oversubscribed and training may run "
        f"many times slower; use fewer workers or --threads, or wait for a quieter machine"
    )
