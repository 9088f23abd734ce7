"""The ``kdbench`` command line.

User errors (:class:`KdbenchError`) and files that cannot be read or written print one
line and exit 2; failed cells make ``run`` exit 1; Ctrl-C exits 130 with every finished
cell saved. ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import errno
import functools
import inspect
import sys
import textwrap
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import NoReturn

import click
from tabulate import tabulate

from kdbench import __version__
from kdbench.cli.scaffold import KINDS as PLUGIN_KINDS
from kdbench.core.errors import KdbenchError, StorageError
from kdbench.core.registry import KINDS

EXIT_FAILED_CELLS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
INTERRUPTED = "kdbench: interrupted; finished cells are saved - run the same command to resume"


# OS errors about the machine rather than the code, even when no path is attached.
_ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)


class _Group(click.Group):
    """Turns user errors, file-system failures and Ctrl-C into one line and an exit code.

    Commands plugins add (the ``register_commands`` hook) are loaded only when a name
    is not one of the built-in commands, or for the list in ``--help``; a name no loaded
    plugin added loads the ``kdbench``-group plugins left out so far and is looked up
    again. Plugin warnings are printed as one ``kdbench: ...`` line each.
    """

    _plugin_commands_added = False
    adding_for: str | None = None  # the plugin whose register_commands hook runs

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if self.adding_for and name in self.commands:  # the first keeps the name
            from kdbench.core.plugins import warn

            warn(f"command '{name}' of plugin '{self.adding_for}' is disabled: "
                 f"the command line has a command of that name")  # fmt: skip
            return
        super().add_command(cmd, name)

    def _add_plugin_commands(self) -> None:
        if not self._plugin_commands_added:
            self._plugin_commands_added = True
            from kdbench.core.plugins import add_commands

            add_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._add_plugin_commands()
        if cmd_name not in self.commands:
            from kdbench.core.plugins import add_commands, load_deferred

            if new := load_deferred():
                add_commands(self, only=new)
        return super().get_command(ctx, cmd_name)

    def main(self, *args, **kwargs):
        with warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
            try:
                return super().main(*args, **kwargs)
            except KdbenchError as exc:  # loading plugins for --help or a name (strict)
                if getattr(exc, "_kdbench_debug", False):  # --debug: the traceback is wanted
                    raise
                _fail(exc)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KdbenchError as exc:
            if _debug(ctx):
                exc._kdbench_debug = True  # type: ignore[attr-defined]  # main lets it through
                raise
            _fail(exc)
        except OSError as exc:
            # A file the harness could not read or write (permissions, a full disk, a
            # path through a file) is the user's to fix; any other OSError is a bug.
            if _debug(ctx) or (exc.filename is None and exc.errno not in _ENVIRONMENT_ERRNOS):
                raise
            _fail(StorageError(exc.filename, exc, "access") if exc.filename else exc.strerror)
        except KeyboardInterrupt:
            _interrupted()


def _show_warning(default, message, category, filename, lineno, file=None, line=None) -> None:
    """kdbench's own warnings (``kdbench: ...``) as that one line; others as Python shows them."""
    if str(message).startswith("kdbench: "):
        click.echo(str(message), err=True)
    else:
        default(message, category, filename, lineno, file, line)


def _debug(ctx: click.Context) -> bool:
    """--debug, read once the group's callback has run (before it, ``ctx.obj`` is unset)."""
    return bool(ctx.obj and ctx.obj.get("debug"))


def _fail(message: object) -> NoReturn:
    """One ``kdbench: error:`` line per mistake (a benchmark file may have several)."""
    for line in str(message).splitlines() or [type(message).__name__]:
        click.echo(f"kdbench: error: {line}", err=True)
    sys.exit(EXIT_USAGE)


def _interrupted() -> NoReturn:
    click.echo(INTERRUPTED, err=True)
    sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kdbench")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """kdbench: benchmark knowledge-distillation methods across a whole matrix.

    A benchmark file (TOML) names teachers, students, distillation losses, datasets
    and seeds. `kdbench run FILE` trains every cell, measures accuracy, latency and
    size, writes one JSON record per cell and prints mean ± std tables over seeds.

    \b
    Exit codes: 0 success, 1 some cells failed, 2 usage, config or file error
    (or the results folder is in use), 130 interrupted (run again to resume).
    """
    ctx.ensure_object(dict)["debug"] = debug


def _context():
    from kdbench.engine.context import RunContext

    return RunContext()


_WAIT = click.option(
    "--wait",
    is_flag=True,
    help="If another kdbench process writes the results folder, wait for it instead of exiting 2.",
)
_THREADS = click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Torch CPU threads per training process (default: OMP_NUM_THREADS if set, else "
    "usable cores / workers at once).",
)
_SET = click.option(
    "--set",
    "set_values",
    multiple=True,
    metavar="KEY=VALUE",
    help="Replace a value of FILE, checked as if written there; repeatable. KEY is dotted "
    "(recipe.epochs, datasets.cifar100.download), VALUE a TOML value (1, true, [0, 1]).",
)


def _overrides(set_values: tuple[str, ...]) -> list:
    from kdbench.core.overrides import parse_override

    return [parse_override(text) for text in set_values]


_YES = click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Go beyond the limits on seeds, epochs and matrix size (see docs/benchmark-files.md).",
)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Results directory (default: results/<benchmark name>). Nothing is written elsewhere.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to train and measure; auto picks CUDA when available.",
)
@click.option("--executor", help="Run cells with this executor instead of the file's [executor].")
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    help="Processes (devices) per cell, replacing [recipe] devices; part of each cell's id.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the expanded matrix (cell ids) and train nothing."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display; print only the table.")
@click.option(
    "--log-every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Without a terminal: a progress line every N epochs of a cell (and its last).",
)
@_THREADS
@_WAIT
@_SET
@_YES
def run(
    file: Path,
    out: Path | None,
    device: str,
    executor: str | None,
    devices: int | None,
    dry_run: bool,
    quiet: bool,
    log_every: int,
    threads: int | None,
    wait: bool,
    set_values: tuple[str, ...],
    yes: bool,
) -> None:
    """Run every cell of the benchmark FILE that has no complete record yet.

    Finished cells are skipped (resume); a failed cell is recorded and the rest go
    on; the leaderboard is written as leaderboard.md and .csv beside the records.
    """
    from kdbench.cli.progress import make_display
    from kdbench.engine.runner import default_out_dir, plan, run_benchmark
    from kdbench.records.store import RecordStore
    from kdbench.reporting.report import write_run_tables

    context = _context()
    # Validated first: an invalid file writes nothing, not even the results folder.
    the_plan = plan(
        file, context, validate=True, confirmed=yes, devices=devices,
        overrides=_overrides(set_values),
    )  # fmt: skip
    out_dir = out or default_out_dir(the_plan.config)
    if dry_run:
        store = RecordStore(out_dir)
        rows = [
            [
                cell.id,
                cell.dataset.name,
                cell.teacher.model.name if cell.teacher else "-",
                cell.student.name,
                cell.loss.label,
                cell.seed,
                "done" if store.is_done(cell.id) else "pending",
            ]
            for cell in the_plan.cells
        ]
        headers = ["cell", "dataset", "teacher", "student", "loss", "seed", "state"]
        click.echo(tabulate(rows, headers=headers))
        click.echo(f"\n{len(rows)} cells; config hash {the_plan.config_hash}; out {out_dir}")
        return
    result = run_benchmark(
        the_plan, context, out_dir=out_dir, device=device, executor=executor, quiet=quiet,
        wait=wait, threads=threads, log_every=log_every, display=make_display,
        summarize=write_run_tables,
    )  # fmt: skip
    click.echo(result.table)
    click.echo(f"\nrecords and tables: {result.out_dir}")
    if result.failed:
        click.echo(f"kdbench: {len(result.failed)} cell(s) failed; see the records", err=True)
        sys.exit(EXIT_FAILED_CELLS)


@cli.group()
def teachers() -> None:
    """Provision teachers on their own (train and cache, or load checkpoints)."""


@teachers.command(name="train")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Results directory (as for run).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where to train.")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@_THREADS
@_WAIT
@_SET
@_YES
def teachers_train(
    file: Path,
    out: Path | None,
    device: str,
    quiet: bool,
    threads: int | None,
    wait: bool,
    set_values: tuple[str, ...],
    yes: bool,
) -> None:
    """Train (or load) every teacher FILE needs and print their test accuracy.

    Trained teachers are cached in <out>/teachers/ by content hash; `kdbench run`
    with the same file and --out reuses them.
    """
    from rich.console import Console

    from kdbench.cli.progress import make_display
    from kdbench.core.threads import using_threads
    from kdbench.engine.context import resolve_device
    from kdbench.engine.runner import (
        default_out_dir,
        load_datasets,
        plan,
        provision_teachers,
        run_threads,
    )
    from kdbench.records.lock import results_lock

    context = _context()
    the_plan = plan(file, context, validate=True, confirmed=yes, overrides=_overrides(set_values))
    out_dir = out or default_out_dir(the_plan.config)
    load_datasets(the_plan, context)
    display = None if quiet else make_display(0, Console(stderr=True))
    with (
        results_lock(out_dir, wait=wait, notify=lambda line: click.echo(line, err=True)),
        using_threads(run_threads(the_plan.config, threads)),
        display or nullcontext(),
    ):
        infos = provision_teachers(
            the_plan.cells, context, out_dir, resolve_device(device), display
        )
    rows = [
        [i["name"], i["source"], f"{i['top1']:.2f}", "yes" if i["cached"] else "no", i["weights"]]
        for i in infos.values()
    ]
    click.echo(tabulate(rows, headers=["teacher", "source", "top-1 %", "cached", "weights"]))


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@_SET
@_YES
def validate(file: Path, set_values: tuple[str, ...], yes: bool) -> None:
    """Check a benchmark FILE as a run would, training nothing and writing nothing.

    Keys, types, ranges, names and limits are checked; datasets are loaded, every model
    is built and run on two samples on the CPU, teacher checkpoints are opened and
    matched, and every loss gets the feature taps it needs. Every mistake is listed.
    """
    from kdbench.engine.runner import plan

    overrides = _overrides(set_values)
    the_plan = plan(file, _context(), validate=True, confirmed=yes, overrides=overrides)
    with_set = f" with {len(set_values)} --set" if set_values else ""
    tune = the_plan.config.tune
    tuned = (
        f"; each method tuned first: up to {tune.trials} trials on "
        f"{tune.validation:.0%} of the training split"
        + (", then run tuned and as published" if tune.published else "")
        if tune
        else ""
    )
    click.echo(f"{file}{with_set}: ok ({len(the_plan.cells)} cells{tuned})")


WIDTH = 100  # listings fit a terminal of this many columns


@cli.command()
def plugins() -> None:
    """List every loaded plugin: version, source and what it registered, then every problem.

    Always exits 0 when kdbench itself works: skipped plugins, names registered twice and
    plugins made for another kdbench version are listed under the table (`kdbench list`
    shows the names themselves).
    """
    from kdbench.core.plugins import command_line_plugins, commands_by_plugin, report_formats

    loaded = _context().plugins
    commands = commands_by_plugin(click.Group)  # loads every command-line plugin
    formats = report_formats()
    line = command_line_plugins().loaded
    seen = {(info.name, info.source) for info in loaded.infos}
    rows = []
    for info in loaded.infos + [i for i in line.infos if (i.name, i.source) not in seen]:
        registered = loaded.registry.by_plugin(info.name)
        if mine := sorted(f.name for f in formats.values() if f.plugin == info.name):
            registered["formats"] = mine
        if mine := sorted(commands.get(info.name, {})):
            registered["commands"] = mine
        what = "; ".join(f"{kind}: {_some(names)}" for kind, names in registered.items())
        rows.append([info.name, info.version, info.source, what or "-"])
    click.echo(_fit(rows, ["plugin", "version", "source", "registered"]))
    for problem in dict.fromkeys(loaded.problems + line.problems):
        click.echo(textwrap.fill(f"problem: {problem}", WIDTH, subsequent_indent="  "))


def _some(names: list[str], limit: int = 4) -> str:
    """All names, or a count (a plugin may register thousands)."""
    return ", ".join(names) if len(names) <= limit else f"{len(names)} names"


def _fit(rows: list[list[str]], headers: list[str]) -> str:
    """A table whose last column wraps so that lines stay within :data:`WIDTH`."""
    fixed = [
        max(len(str(x)) for x in [h, *(r[i] for r in rows)]) for i, h in enumerate(headers[:-1])
    ]
    room = max(WIDTH - sum(fixed) - 2 * len(fixed), 20)
    wrapped = [[*r[:-1], textwrap.fill(str(r[-1]), room)] for r in rows]
    return tabulate(wrapped, headers=headers)


_PROVIDED = ("formats", "commands")  # listed from the command-line plugins, not the registry


@cli.command(name="list")
@click.argument("kind", type=click.Choice([*KINDS, *_PROVIDED]))
@click.argument("pattern", required=False)
@click.option("--plugin", "plugin", help="Only what this plugin registered.")
@click.option("--all", "show_all", is_flag=True, help="List every name of large plugins too.")
def list_(kind: str, pattern: str | None, plugin: str | None, show_all: bool) -> None:
    """List registered KIND names by plugin, with parameters and a description.

    PATTERN filters names: a shell pattern (`resnet*`) or a part of the name. A plugin
    with more than 40 names is summed up in one line unless PATTERN, --plugin or --all
    narrows or asks for it. `kdbench show` tells everything about one name.
    """
    from kdbench.cli.describe import clip, matching, signature_line

    if kind in _PROVIDED:
        things, sources = _provided(kind)
    else:
        loaded = _context().plugins
        things = {e.name: e for e in loaded.registry.entries(kind)}
        sources = {info.name: info.source for info in loaded.infos}

    def line(name: str) -> str:
        thing = things[name]
        params = signature_line(thing) if kind not in _PROVIDED else ""
        text = f"  {name}" + (f"({params})" if params else "")
        return text + (f"  {thing.description}" if thing.description else "")

    owners = {name: thing.plugin for name, thing in things.items()}
    groups: dict[str, list[str]] = {}
    for name in matching(sorted(owners), pattern):
        groups.setdefault(owners[name], []).append(name)
    if plugin is not None:
        groups = {plugin: groups.get(plugin, [])}
    for owner, names in sorted(groups.items()):
        click.echo(f"{owner} ({sources.get(owner, 'not loaded')}): {len(names)} {kind}")
        if len(names) > 40 and not (show_all or pattern or plugin):
            more = f", ... (narrow with a pattern, --plugin {owner} or --all)"
            click.echo(clip(f"  {', '.join(names[:3])}", WIDTH - len(more)) + more)
            continue
        for name in names:
            click.echo(clip(line(name), WIDTH))
    if not any(groups.values()):
        click.echo(f"no {kind} match" + (f" '{pattern}'" if pattern else ""))
    elif kind in ("teachers", "students"):
        click.echo(f"feature taps and their shapes: kdbench show {kind[:-1]} NAME")


def _provided(kind: str) -> tuple[dict, dict[str, str]]:
    """Report formats or commands by name, and each plugin's source."""
    from kdbench.cli import describe
    from kdbench.core.plugins import command_line_plugins

    provided = describe.formats() if kind == "formats" else describe.commands(cli)
    sources = {info.name: info.source for info in command_line_plugins().loaded.infos}
    return provided, {"kdbench": "built-in", **sources}


_SHOW_KINDS = {"model": "students", "teacher": "teachers", "student": "students",
               "loss": "losses", "dataset": "datasets", "executor": "executors",
               "tracker": "trackers"}  # fmt: skip


@cli.command()
@click.argument("kind", type=click.Choice([*_SHOW_KINDS, "format", "command"]))
@click.argument("name")
@click.option("--input", "input_shape", default="3x32x32", show_default=True,
              help="Image shape CxHxW the model's taps are measured on.")  # fmt: skip
def show(kind: str, name: str, input_shape: str) -> None:
    """Everything about one registered NAME: parameters, taps, plugin and documentation.

    Parameters come with their types, defaults and the constraints a benchmark file is
    checked against; a model is built with its defaults and its feature taps are shown
    with their per-image shapes for --input.
    """
    from kdbench.cli.describe import parameters, tap_shapes
    from kdbench.core.errors import ConfigError

    if kind not in _SHOW_KINDS:
        _show_provided(kind, name)
        return
    loaded = _context().plugins
    entry = loaded.registry.get(_SHOW_KINDS[kind], name, key=kind)
    source = next((i.source for i in loaded.infos if i.name == entry.plugin), "unknown")
    click.echo(f"{kind} {entry.name}  (plugin {entry.plugin}, {source})")
    doc = inspect.getdoc(entry.obj) or entry.description
    if doc:
        click.echo("\n" + doc)
    rows = parameters(entry)
    click.echo("\nparameters:")
    click.echo(
        tabulate(rows, headers=["name", "type", "default", "constraint"]) if rows else "  none"
    )
    if entry.kind == "losses":
        click.echo(
            f"\nneeds a teacher: {'yes' if getattr(entry.obj, 'needs_teacher', True) else 'no'}"
        )
    if entry.kind in ("teachers", "students"):
        try:
            shape = tuple(int(n) for n in input_shape.lower().split("x"))
            if len(shape) != 3:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"--input must be CxHxW such as 3x32x32, got '{input_shape}'"
            ) from None
        taps = tap_shapes(entry, {}, shape)
        click.echo(f"\ntaps (input {input_shape}, default parameters):")
        click.echo(tabulate(taps, headers=["tap", "module", "shape"]) if taps else "  none")


def _show_provided(kind: str, name: str) -> None:
    """``kdbench show format|command NAME``: plugin, source, documentation."""
    from kdbench.core.errors import ConfigError, did_you_mean

    provided, sources = _provided(f"{kind}s")
    if name not in provided:
        raise ConfigError(
            f"unknown {kind} '{name}'{did_you_mean(name, provided)}; "
            f"kdbench list {kind}s lists them",
            key=kind,
        )
    item = provided[name]
    click.echo(f"{kind} {name}  (plugin {item.plugin}, {sources.get(item.plugin, 'unknown')})")
    for text in (item.doc or item.description, "\n".join(item.details)):
        if text:
            click.echo("\n" + text)


@cli.command(name="new-plugin")
@click.argument("kind", type=click.Choice(PLUGIN_KINDS))
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(path_type=Path, file_okay=False), default=".",
              show_default=True, help="Where to create the distribution's folder.")  # fmt: skip
def new_plugin(kind: str, name: str, parent: Path) -> None:
    """Create a plugin distribution kdbench-NAME registering one KIND called NAME.

    It has the entry point, a working plugin module to edit, a README and a test that
    runs kdbench's kit on it: `pip install -e kdbench-NAME && pytest kdbench-NAME`.
    """
    from kdbench.cli.scaffold import new_plugin as write

    folder = write(kind, name, parent)
    click.echo(f"created {folder}")


class _FormatChoice(click.Choice):
    """The built-in report formats and those plugins registered, looked up when needed."""

    def __init__(self) -> None:
        super().__init__([])

    @property
    def choices(self) -> tuple[str, ...]:
        from kdbench.reporting.report import all_formats

        return all_formats()

    @choices.setter
    def choices(self, value: object) -> None:
        pass  # always the registered formats

    def convert(self, value, param, ctx):
        if value not in self.choices:  # perhaps a plugin not loaded yet registers it
            from kdbench.core.plugins import load_deferred

            load_deferred()
        return super().convert(value, param, ctx)


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--format",
    "formats",
    multiple=True,
    type=_FormatChoice(),
    help="Output format; repeat for several. Default: md on stdout, or all of them with --out.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the formats and the plots (PNG and SVG) into this folder.",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path, exists=True),
    help="Published numbers (<dataset>_published.csv or a folder of them); "
    "default results/reference.",
)
@click.option("--no-reference", is_flag=True, help="Show measured rows only.")
@click.option("--no-plots", is_flag=True, help="With --out: skip the figures.")
@click.option(
    "--pool",
    is_flag=True,
    help="One row per method even where its records come from different configurations.",
)
def report(
    results: tuple[Path, ...],
    formats: tuple[str, ...],
    out: Path | None,
    reference: Path | None,
    no_reference: bool,
    no_plots: bool,
    pool: bool,
) -> None:
    """Leaderboards from the records in RESULTS (results folders, records/ folders or
    record files; several runs or machines at once).

    One table per (dataset, teacher -> student) pair, methods sorted by top-1 with
    mean ± std, 95% CI, gain over the ce baseline and cost; a methods x pairs matrix
    with average ranks; published reference numbers beside measured ones; the
    provenance of every record. An experiment found twice (another folder, another
    benchmark name) is counted once, with a warning; a method run with different
    configurations is one row per configuration unless --pool. Unusable record files
    are skipped with a warning (only `kdbench run` quarantines them).
    """
    from kdbench.reporting.load import load_leaderboard
    from kdbench.reporting.report import all_formats, publish, render_format

    board_set = load_leaderboard(results, reference, use_reference=not no_reference, pool=pool)
    for warning in board_set.warnings:
        click.echo(f"kdbench: warning: {warning}", err=True)
    if out is None:
        for fmt in formats or ("md",):
            click.echo(render_format(board_set, fmt), nl=False)
            click.echo()
        return
    written = publish(board_set, out, formats or all_formats(), plots=not no_plots)
    for path in written:
        click.echo(str(path))


@cli.group()
def cache() -> None:
    """The teacher-logit store of a results folder (docs/performance.md)."""


@cache.command(name="clear")
@click.argument(
    "directory", metavar="DIR", type=click.Path(path_type=Path, exists=True, file_okay=False)
)
@_WAIT
def cache_clear(directory: Path, wait: bool) -> None:
    """Remove the teacher logits stored in results DIR; records stay.

    The next cell that needs them computes them again. Refused (exit 2) while a run
    holds DIR, unless --wait.
    """
    from kdbench.records.lock import results_lock
    from kdbench.records.logit_folder import clear_store

    with results_lock(directory, wait=wait, notify=lambda line: click.echo(line, err=True)):
        arrays, size = clear_store(directory)
    click.echo(f"{directory}: removed {arrays} teacher-logit array(s), {size / 2**20:,.1f} MiB")


@cli.command()
@click.argument(
    "directory", metavar="DIR", type=click.Path(path_type=Path, exists=True, file_okay=False)
)
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
def status(directory: Path, file: Path | None) -> None:
    """Show how many cells of results DIR are done, failed and pending.

    Pending cells come from the benchmark FILE (default: the DIR/benchmark.toml that
    `kdbench run` copied there). Jobs an executor submitted that have not come back
    yet (Slurm's) are listed with their state.
    """
    from kdbench.cli.status import status as read_status

    state = read_status(directory, file, _context)
    total = "?" if state.cells is None else state.cells
    pending = "? (no benchmark file)" if state.cells is None else len(state.pending)
    click.echo(f"{directory}: {total} cells")
    click.echo(f"  done     {state.done}")
    click.echo(f"  failed   {len(state.failed)}")
    click.echo(f"  pending  {pending}")
    if state.trials or state.trial_budget:
        budget = f" of at most {state.trial_budget}" if state.trial_budget else ""
        rest = ", ".join(f"{n} {status}" for status, n in sorted(state.trials.items()))
        click.echo(f"  trials   {sum(state.trials.values())}{budget} ({rest or 'none yet'})")
    if state.unusable:
        click.echo(f"  unusable {len(state.unusable)} (the next run quarantines and reruns them)")
    if state.quarantined:
        click.echo(f"  quarantined {len(state.quarantined)} (in records/.quarantine/)")
    arrays, size = state.logits
    if arrays:
        click.echo(f"  teacher logits {arrays} array(s), {size / 2**20:,.1f} MiB "
                   f"(`kdbench cache clear {directory}` removes them)")  # fmt: skip
    for bad in state.unusable:
        click.echo(f"kdbench: warning: {bad}", err=True)
    if state.other_records:
        click.echo(f"  ({state.other_records} record(s) of cells not in the benchmark)")
    for record in state.failed:
        message = (record.get("error") or {}).get("message", "")
        click.echo(f"failed: {record['cell_id']}: {message.splitlines()[0] if message else ''}")
    if state.jobs:
        # A lockstep group's job lists its cells one per line.
        rows = [[j["job_id"], j["state"], "\n".join(j["labels"]), j["since"]] for j in state.jobs]
        job = f"{state.executor} job" if state.executor else "job"
        click.echo(tabulate(rows, headers=[job, "state", "cells", "submitted"]))


@cli.command()
@click.argument("results", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("cell")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["torchscript", "onnx"]),
    default="torchscript",
    show_default=True,
    help="onnx needs the onnx package.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Output file (default: RESULTS/exports/CELL.pt or .onnx).",
)
def export(results: Path, cell: str, fmt: str, out: Path | None) -> None:
    """Write the trained student of CELL in RESULTS as a deployable file.

    CELL is a cell id, or the path of its record in RESULTS/records/.
    """
    from kdbench.engine.export import export_student

    click.echo(export_student(results, cell, fmt, out))


def main() -> None:
    try:
        cli(prog_name="kdbench")
    except KeyboardInterrupt:  # before a command starts; a command's own is handled in _Group
        _interrupted()
