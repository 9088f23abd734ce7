"""The plugin manager: loads built-in and installed plugins and calls their hooks.

Nothing else in kdbench touches pluggy. Installed distributions are found through the
``kdbench`` entry-point group and loaded one at a time. No plugin can stop the others
(``KDBENCH_STRICT_PLUGINS=1`` makes each of these fatal instead):

- one that fails to import, implements an unknown hook or fails while registering is
  skipped;
- a name registered twice keeps its first registration (built-ins load first) and the
  later one is disabled;
- one whose distribution requires a kdbench version other than the running one is
  loaded, with a warning.

Each problem is one line in :attr:`Plugins.problems`: shown by ``kdbench plugins``,
warned about (a :class:`PluginWarning`, printed as ``kdbench: <problem>``) by every
command and written into every record's provenance. Every hook is called through
pluggy's hook callers, never by calling an implementation directly.

Two ways in: :func:`load_plugins` loads every plugin of the ``kdbench`` group and fills
the registry of models, losses, datasets, executors and trackers (torch comes with
them); :func:`command_line_plugins` loads what adds commands and report formats, so
``kdbench --help`` and ``kdbench report`` start fast whatever else is installed (a model
zoo's plugin imports its framework): the built-ins that import no torch, the modules of
the ``kdbench.cli`` entry-point group, and those of the ``kdbench`` group whose source
names ``register_commands`` or ``register_formats`` (read, not imported). The other
``kdbench``-group modules are loaded by :func:`load_deferred` when a command or format
name is not found among those, so nothing registered in either group is ignored::

    [project.entry-points."kdbench.cli"]
    my_plugin = "my_package.kdbench_commands"   # imports no torch
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as md
import importlib.util
import os
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

import pluggy

from kdbench.core import hookspecs
from kdbench.core.errors import PluginError
from kdbench.core.registry import KINDS, Registry

ENTRY_POINT_GROUP = "kdbench"
COMMAND_LINE_GROUP = "kdbench.cli"

# Built-ins that import no torch: all the command line needs before a command runs.
COMMAND_LINE_PLUGINS = (
    "kdbench.builtin.commands",
    "kdbench.builtin.formats_json",
)

BUILTIN_PLUGINS = (
    "kdbench.builtin.datasets_digits",
    "kdbench.builtin.datasets_fashion_mnist",
    "kdbench.builtin.datasets_cifar",
    "kdbench.builtin.datasets_imagefolder",
    "kdbench.builtin.models_small",
    "kdbench.builtin.cifar_zoo",
    "kdbench.builtin.models_torchvision",
    "kdbench.builtin.models_mobilenetv1",
    "kdbench.builtin.losses_basic",
    "kdbench.builtin.losses_logit",
    "kdbench.builtin.losses_feature",
    "kdbench.builtin.losses_crd",
    "kdbench.builtin.losses_reviewkd",
    "kdbench.builtin.executors",
    "kdbench.builtin.executors_slurm",
    "kdbench.builtin.executors_ray",
    "kdbench.builtin.trackers_jsonl",
    "kdbench.builtin.trackers_tensorboard",
    "kdbench.builtin.trackers_mlflow",
    *COMMAND_LINE_PLUGINS,
)

# A ``kdbench``-group module whose source names one of these adds to the command line.
_COMMAND_LINE_HOOKS = re.compile(r"\bregister_(?:commands|formats)\b")


class PluginWarning(UserWarning):
    """A plugin problem that does not stop kdbench; commands print it as ``kdbench: ...``."""


def warn(problem: str) -> None:
    """Warn about one plugin problem (once per process: several loaders may meet it)."""
    if problem not in _warned:
        _warned.add(problem)
        warnings.warn(f"kdbench: {problem}", PluginWarning, stacklevel=3)


_warned: set[str] = set()


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin came from."""

    name: str
    version: str
    source: str  # "built-in" or the distribution's name
    group: str = ENTRY_POINT_GROUP


@dataclass
class Plugins:
    """Everything that was loaded: the registry, the plugin list and what went wrong."""

    registry: Registry
    infos: list[PluginInfo]
    failures: list[tuple[str, str]] = field(default_factory=list)
    # Lines about plugins loaded although their distribution asks for another kdbench.
    notes: list[str] = field(default_factory=list)
    # ``plugin 'x' (dist)`` of each plugin that did not load at all.
    unloaded: list[str] = field(default_factory=list)

    def versions(self) -> dict[str, str]:
        """Each loaded plugin's version, by plugin name."""
        return {info.name: info.version for info in self.infos}

    @property
    def problems(self) -> list[str]:
        """Every skipped plugin, version mismatch and disabled registration, one line each."""
        sources = {info.name: info.source for info in self.infos}
        skipped = [f"plugin '{name}' {error}" for name, error in self.failures]
        return skipped + self.notes + [clash.message(sources) for clash in self.registry.clashes]


@dataclass(frozen=True)
class ReportFormat:
    """An output format of ``kdbench report``: leaderboard -> text, and its file name."""

    name: str
    render: Callable[[Any], str]
    filename: str
    plugin: str
    description: str = ""


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _strict(strict: bool | None) -> bool:
    return os.environ.get("KDBENCH_STRICT_PLUGINS") == "1" if strict is None else strict


def _register_builtins(pm: pluggy.PluginManager, modules: Iterable[str], into: Plugins) -> None:
    from kdbench import __version__

    for module_name in modules:
        name = module_name.rsplit(".", 1)[1]
        pm.register(importlib.import_module(module_name), name=name)
        into.infos.append(PluginInfo(name, __version__, "built-in"))


def _register_entry_points(
    pm: pluggy.PluginManager, entry_points: Iterable[Any], strict: bool, into: Plugins
) -> list[str]:
    """Register each entry point's module into ``pm``; the names they were registered as.

    A module already registered (a distribution may name it in both groups) is skipped;
    a name taken by another group's plugin gets the group as a suffix (``x[kdbench]``).
    """
    registered = []
    groups = {info.name: info.group for info in into.infos}
    for ep in entry_points:
        dist = ep.dist.name if ep.dist else "unknown distribution"
        version = ep.dist.version if ep.dist else "unknown"
        group = getattr(ep, "group", ENTRY_POINT_GROUP)
        name = ep.name
        try:
            if pm.get_plugin(name) is not None and groups.get(name, group) == group:
                raise PluginError(f"a plugin named '{name}' is already loaded")
            module = ep.load()
            if pm.is_registered(module):
                continue
            if pm.get_plugin(name) is not None:
                name = f"{name}[{group}]"
            pm.register(module, name=name)
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party plugin
            message = f"{type(exc).__name__}: {exc}"
            if strict:
                raise PluginError(f"plugin '{ep.name}' ({dist}) failed to load: {message}") from exc
            into.failures.append((ep.name, f"({dist}) failed to load and is skipped: {message}"))
            into.unloaded.append(f"plugin '{ep.name}' ({dist})")
            continue
        into.infos.append(PluginInfo(ep.name, version, dist, group))
        groups.setdefault(ep.name, group)
        registered.append(name)
        if ep.dist is not None and (note := requirement_note(ep.name, ep.dist)):
            if strict:
                raise PluginError(note)
            into.notes.append(note)
    for name, error in _unknown_hooks(pm):
        plugin = plain_name(name)
        if strict:
            raise PluginError(f"plugin '{plugin}' implements an unknown hook: {error}")
        into.failures.append((plugin, f"implements an unknown hook {error} and is skipped"))
        source = next((i.source for i in into.infos if i.name == plugin), "unknown")
        into.unloaded.append(f"plugin '{plugin}' ({source})")
        pm.unregister(name=name)
        into.infos = [info for info in into.infos if info.name != plugin]
        registered = [n for n in registered if n != name]
    return registered


def plain_name(registered_as: str) -> str:
    """A plugin's entry-point name from the name it is registered under (``x[kdbench]``)."""
    return registered_as.split("[", 1)[0]


def requirement_note(plugin: str, dist: md.Distribution) -> str | None:
    """One line when ``dist`` requires a kdbench version other than the running one."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    from kdbench import __version__

    for line in dist.requires or ():
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != "kdbench" or not req.specifier:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an optional extra's requirement
        if not req.specifier.contains(__version__, prereleases=True):
            return (
                f"plugin '{plugin}' ({dist.name} {dist.version}) requires "
                f"{req.name}{req.specifier} but this is kdbench {__version__}; it may not work"
            )
    return None


def call_each(
    pm: pluggy.PluginManager,
    hook: str,
    make_register: Callable[[str], Any],
    *,
    argument: str = "register",
    only: Collection[str] | None = None,
) -> list[tuple[str, Exception]]:
    """Call ``hook`` through pluggy once per implementing plugin, each with its own
    ``register`` (``make_register(plugin_name)``, passed as ``argument``), so what it
    registers is its own; ``only`` limits the call to those plugins.

    Plugins are called in registration order (built-ins first), as pluggy orders them
    with ``tryfirst`` / ``trylast``; hook wrappers of the same plugin still apply. One
    plugin's failure does not stop the others: ``(plugin, exception)`` pairs are returned.
    """
    impls = getattr(pm.hook, hook).get_hookimpls()
    callers = [impl for impl in impls if not (impl.hookwrapper or impl.wrapper)]
    names = list(dict.fromkeys(impl.plugin_name for impl in callers))
    plugins = [impl.plugin for impl in impls]
    failed: list[tuple[str, Exception]] = []
    for name in names:
        if only is not None and name not in only:
            continue
        others = [p for p in plugins if p is not pm.get_plugin(name)]
        try:
            caller = pm.subset_hook_caller(hook, remove_plugins=others)
            caller(**{argument: make_register(name)})
        except Exception as exc:  # noqa: BLE001 - one plugin's bug must not stop the rest
            failed.append((name, exc))
    return failed


def load_plugins(*, strict: bool | None = None) -> Plugins:
    """Load built-ins and installed plugins and fill a fresh registry."""
    strict = _strict(strict)
    pm = make_plugin_manager()
    registry = Registry()
    plugins = Plugins(registry, [])
    _register_builtins(pm, BUILTIN_PLUGINS, plugins)
    _register_entry_points(pm, md.entry_points(group=ENTRY_POINT_GROUP), strict, plugins)
    registry.unloaded = plugins.unloaded
    for kind, make_register in [("models", registry.model_registrar)] + [
        (kind, functools.partial(registry.registrar, kind)) for kind in KINDS
    ]:
        for plugin, exc in call_each(pm, f"register_{kind}", make_register):
            if strict:
                raise PluginError(f"plugin '{plugin}' failed to register {kind}: "
                                  f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
            plugins.failures.append(
                (plugin, f"failed to register {kind} (kept what it registered "
                 f"before): {type(exc).__name__}: {exc}")
            )  # fmt: skip
    if strict and registry.clashes:
        raise PluginError(plugins.problems[0])
    for problem in plugins.problems:
        warn(problem)
    return plugins


def _unknown_hooks(pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    """(plugin, hook) for each implementation of a hook kdbench does not define (a typo)."""
    found = []
    for name in list(vars(pm.hook)):
        hook = getattr(pm.hook, name)
        if name.startswith("_") or hook.has_spec():
            continue
        for impl in hook.get_hookimpls():
            if not impl.optionalhook:
                found.append((impl.plugin_name, f"'{name}' (hooks: {_spec_names()})"))
    return found


def _spec_names() -> str:
    names = [n for n in dir(hookspecs) if n.startswith("register_") or n == "track_event"]
    return ", ".join(names)


class EventHooks:
    """Tracker instances as plugins of ``track_event``, each called on its own.

    Each tracker gets its own hook caller, so one that raises is named, unregistered
    and reported while the others still receive the event.
    """

    def __init__(self, trackers: Mapping[str, object]) -> None:
        self._pm = make_plugin_manager()
        for name, tracker in trackers.items():
            self._pm.register(tracker, name=name)

    def names(self) -> list[str]:
        return [name for name, _ in self._pm.list_name_plugin()]

    def call(self, **kwargs: Any) -> list[tuple[str, BaseException]]:
        """Call ``track_event`` on every tracker; the ones that raised, now unregistered."""
        failed = []
        plugins = dict(self._pm.list_name_plugin())
        for name, plugin in plugins.items():
            others = [p for n, p in plugins.items() if n != name]
            try:
                self._pm.subset_hook_caller("track_event", remove_plugins=others)(**kwargs)
            except Exception as exc:  # noqa: BLE001 - a tracker must never stop the run
                self._pm.unregister(plugin, name=name)
                failed.append((name, exc))
        return failed

    def plugins(self) -> list[tuple[str, object]]:
        return list(self._pm.list_name_plugin())


def adds_to_command_line(ep: Any) -> bool:
    """Whether an entry point's module names a command-line hook, read without importing it."""
    source = _module_source(getattr(ep, "module", None) or "")
    return source is not None and _COMMAND_LINE_HOOKS.search(source) is not None


def _module_source(module: str) -> str | None:
    """The source of ``module``, found without running it or the packages above it."""
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
        for depth in range(2, len(parts) + 1):
            if spec is None or spec.submodule_search_locations is None:
                return None
            search = list(spec.submodule_search_locations)
            spec = PathFinder.find_spec(".".join(parts[:depth]), search)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        return Path(spec.origin).read_text(encoding="utf-8", errors="replace")
    except (ImportError, OSError, ValueError):
        return None


@dataclass
class CommandLinePlugins:
    """The plugins asked for commands and report formats, and the ``kdbench``-group
    entry points not loaded yet (:meth:`load_deferred`)."""

    pm: pluggy.PluginManager
    loaded: Plugins
    deferred: list[Any]

    def load_deferred(self) -> list[str]:
        """Load the deferred entry points; the names they were registered under."""
        entry_points, self.deferred = self.deferred, []
        before = len(self.loaded.problems)
        names = _register_entry_points(self.pm, entry_points, _strict(None), self.loaded)
        for problem in self.loaded.problems[before:]:
            warn(problem)
        return names


@functools.cache
def command_line_plugins() -> CommandLinePlugins:
    """The plugins the command line asks for commands and formats: the built-ins that
    import no torch, the ``kdbench.cli`` entry points and the ``kdbench`` ones whose
    source names ``register_commands`` or ``register_formats``.

    Loaded once per process; a plugin that fails to load is reported as by
    :func:`load_plugins`.
    """
    pm = make_plugin_manager()
    loaded = Plugins(Registry(), [])
    _register_builtins(pm, COMMAND_LINE_PLUGINS, loaded)
    eager, deferred = [], []
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        (eager if adds_to_command_line(ep) else deferred).append(ep)
    groups = [*md.entry_points(group=COMMAND_LINE_GROUP), *eager]
    _register_entry_points(pm, groups, _strict(None), loaded)
    for problem in loaded.problems:
        warn(problem)
    return CommandLinePlugins(pm, loaded, deferred)


def load_deferred() -> list[str]:
    """Load the ``kdbench``-group modules the command line left out, for a command or
    format name it did not find; formats they register join :func:`report_formats`.

    Returns the names they were registered under (pass them to :func:`add_commands`).
    """
    state = command_line_plugins()
    new = state.load_deferred()
    if new and report_formats.cache_info().currsize:
        _collect_formats(report_formats(), state.pm, only=new)
    return new


def add_commands(cli: Any, only: Collection[str] | None = None) -> None:
    """Let every command-line plugin (or those in ``only``) add commands to ``cli``.

    ``cli.adding_for`` names the plugin whose hook runs, so the group can refuse a
    command whose name it has already (the first keeps it, as for every other kind).
    """

    def for_plugin(plugin: str) -> Any:
        cli.adding_for = plain_name(plugin)
        return cli

    try:
        failed = call_each(
            command_line_plugins().pm, "register_commands", for_plugin, argument="cli", only=only
        )
    finally:
        cli.adding_for = None
    _registration_failed(failed, "commands")


def commands_by_plugin(new_group: Callable[[], Any]) -> dict[str, dict[str, Any]]:
    """Every plugin's commands (deferred plugins loaded too), each added to its own
    ``new_group()``: ``{plugin: {name: command}}``."""
    load_deferred()
    found: dict[str, dict[str, Any]] = {}

    def group_of(plugin: str) -> Any:
        return found.setdefault(plain_name(plugin), new_group())

    failed = call_each(command_line_plugins().pm, "register_commands", group_of, argument="cli")
    _registration_failed(failed, "commands")
    return {plugin: dict(group.commands) for plugin, group in found.items() if group.commands}


@functools.cache
def report_formats() -> dict[str, ReportFormat]:
    """Report formats registered by plugins, by name (a name registered twice is an error)."""
    formats: dict[str, ReportFormat] = {}
    _collect_formats(formats, command_line_plugins().pm)
    return formats


def _collect_formats(
    formats: dict[str, ReportFormat], pm: pluggy.PluginManager, only: Collection[str] | None = None
) -> None:
    def registrar(registered_as: str) -> Callable[..., None]:
        plugin = plain_name(registered_as)

        def register(
            name: str, render: Callable[[Any], str], *, filename: str, description: str = ""
        ) -> None:
            if name in formats:
                raise PluginError(
                    f"report format '{name}' is registered twice: by plugin "
                    f"'{formats[name].plugin}' and by plugin '{plugin}'"
                )
            formats[name] = ReportFormat(name, render, filename, plugin, description)

        return register

    failed = call_each(pm, "register_formats", registrar, only=only)
    for _, exc in failed:
        if isinstance(exc, PluginError):
            raise exc
    _registration_failed(failed, "formats")


def _registration_failed(failed: list[tuple[str, Exception]], what: str) -> None:
    for plugin, exc in failed:
        problem = (
            f"plugin '{plain_name(plugin)}' failed to register {what}: {type(exc).__name__}: {exc}"
        )
        if _strict(None):
            raise PluginError(problem) from exc
        warn(problem)
