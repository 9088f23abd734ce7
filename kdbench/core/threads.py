"""How many CPU threads torch uses: one policy for every way kdbench trains.

The policy: ``--threads`` on the command line, else the executor's own ``threads``,
else an ``OMP_NUM_THREADS`` the user set (per training process, the ecosystem's
convention), else the usable cores divided by the workers that train at once (one for
``local`` and ``teachers train``). Each process sets it before it trains and records
it in ``provenance.threads``. More threads than free cores make training many times
slower (every thread waits for the slowest), so a busy machine is reported.

kdbench exports its own choice as ``OMP_NUM_THREADS`` to the processes it starts; the
user's value, or its absence, is kept aside in ``KDBENCH_USER_OMP_NUM_THREADS`` so that
a worker, or an executor sizing its workers, still reads the user's and not kdbench's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "OMP_NUM_THREADS"
USER_ENV = "KDBENCH_USER_OMP_NUM_THREADS"  # the user's OMP_NUM_THREADS ("": none) once set


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, as Slurm and taskset set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(workers: int = 1) -> int:
    """The usable cores shared out among ``workers`` processes training at once."""
    return max(1, usable_cores() // max(1, workers))


def user_threads() -> int | None:
    """The ``OMP_NUM_THREADS`` the user gave kdbench (not one kdbench set), if a count >= 1."""
    raw = os.environ.get(USER_ENV, os.environ.get(ENV, "")).strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def resolve_threads(given: int | None = None, *, workers: int = 1) -> int:
    """``given`` when set, else the user's ``OMP_NUM_THREADS``, else :func:`default_threads`."""
    return given or user_threads() or default_threads(workers)


def set_threads(threads: int) -> None:
    """Use ``threads`` here and in processes started from here (the user's value kept)."""
    import torch  # here: the executor API imports this module, and status loads it

    torch.set_num_threads(threads)
    os.environ.setdefault(USER_ENV, os.environ.get(ENV, ""))
    os.environ[ENV] = str(threads)


@contextmanager
def using_threads(threads: int | None) -> Iterator[None]:
    """``threads`` torch threads for the block (unchanged when None); restored after."""
    if not threads:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    saved_env = {key: os.environ.get(key) for key in (ENV, USER_ENV)}
    set_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
