"""The plugin contract: every hook kdbench calls, and what a plugin hands over.

A plugin is a module with functions decorated by :data:`hookimpl` whose names are the
hooks below. Each ``register_*`` hook receives a ``register`` callable; call it once per
thing the plugin provides. Distributions expose their plugin module through the
``kdbench`` entry-point group::

    [project.entry-points.kdbench]
    my_plugin = "my_package.kdbench_plugin"

Commands and report formats come from the same module. The command line reads them
without importing every plugin: it loads a ``kdbench``-group module for ``--help`` and
``report`` when its source names ``register_commands`` or ``register_formats``, and the
others only when a command or format name is not found. A distribution may also put
them in a module that imports no torch, in the ``kdbench.cli`` group, which the command
line always loads (see ``docs/plugins.md``)::

    [project.entry-points."kdbench.cli"]
    my_plugin = "my_package.kdbench_commands"

Built-in plugins (``kdbench/builtin/``) use exactly these hooks.
"""

from __future__ import annotations

import pluggy

PROJECT = "kdbench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register):
    """Register models usable as teacher and as student: same signature as below.

    The common case; each name is registered as a teacher and as a student.
    """


@hookspec
def register_teachers(register):
    """Register teacher models: ``register(name, factory, *, taps=None, description=None)``.

    ``factory(num_classes=, in_channels=, **params) -> nn.Module``. ``taps`` maps stage
    names to module paths whose outputs feature-based losses may ask for. A factory that
    accepts ``pretrained`` can provide pretrained weights.
    """


@hookspec
def register_students(register):
    """Register student models; same signature and factory contract as teachers."""


@hookspec
def register_losses(register):
    """Register distillation losses: ``register(name, LossClass, *, description=None)``.

    ``LossClass`` subclasses :class:`kdbench.DistillationLoss`; its keyword-only
    constructor parameters are the TOML parameters of ``[losses.<name>]``.
    """


@hookspec
def register_datasets(register):
    """Register datasets: ``register(name, factory, *, description=None)``.

    ``factory(**params) -> kdbench.DatasetSplits`` (train and test images as uint8
    tensors, labels, and metadata), or ``-> kdbench.StreamingDataset`` (image files read
    by DataLoader workers while training, for data bigger than memory). The returned
    type picks the data path; see ``docs/plugins.md``.
    """


@hookspec
def register_executors(register):
    """Register executors that run cells: ``register(name, executor_class, *, description=None)``.

    ``executor_class(**params)`` has ``map(units, run)``, yielding ``run(unit)`` as each
    unit ends. A unit is a job, whose result is a record, or a list of jobs (a lockstep
    group), whose result is a list of records. Optional ``start(out_dir)``, ``cancel()``
    and ``close()`` bracket a run. See ``kdbench/builtin/executors.py``.
    """


@hookspec
def register_formats(register):
    """Register report formats: ``register(name, render, *, filename, description="")``.

    ``render(leaderboard) -> str`` turns a :class:`kdbench.reports.Leaderboard`
    into text; ``kdbench report --format NAME`` prints it, and with ``--out`` writes it
    to ``filename``. Implemented in a ``kdbench``-group module or, to keep ``kdbench
    report`` from importing that module's torch, in a ``kdbench.cli``-group one. See
    ``kdbench/builtin/formats_json.py``.
    """


@hookspec
def register_trackers(register):
    """Register trackers of run events: ``register(name, tracker_class, *, description=None)``.

    A benchmark's ``[trackers.<name>]`` table builds ``tracker_class(out_dir=, **params)``
    once per run (``jsonl`` is always built); the instance is then a plugin of
    :func:`track_event`. An optional ``close()`` is called when the run ends. See
    ``docs/trackers.md`` and ``kdbench/builtin/trackers_jsonl.py``.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``kdbench`` command line: ``cli`` is its click group.

    Decorate functions with ``@cli.command()``; they appear in ``kdbench --help``.
    Implemented in a ``kdbench``-group module or, to keep ``kdbench --help`` from
    importing that module's torch, in a ``kdbench.cli``-group one (import torch inside
    the command). See ``kdbench/builtin/commands.py``.
    """


@hookspec
def track_event(event):
    """Receive one run event, a :class:`kdbench.RunEvent` (also ``kdbench.trackers.RunEvent``).

    Implemented as a method (decorated with :data:`hookimpl`) of a tracker instance.
    ``event.kind`` is ``cell_started``, ``epoch_ended`` (``event.epoch`` counts from 1;
    ``event.metrics`` holds ``lr``, ``test_top1`` when evaluated and ``train/<term>``),
    ``cell_finished`` (``event.record`` is the cell's record) or ``run_finished``. A
    tracker that raises is reported and disabled; the run goes on.
    """
