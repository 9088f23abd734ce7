"""The plugin manager: loads built-in and installed plugins and calls their hooks.

Nothing else in kdbench touches pluggy. Installed distributions are found through the
``kdbench`` entry-point group and loaded one at a time. No plugin can stop the others
(``KDBENCH_STRICT_PLUGINS=1`` makes each of these fatal instead):

- one that fails to import, implements an unknown hook or fails while registering is
  skipped;
- a name registered twice keeps its first registration (built-ins load first) and the
  later one is disabled.

Each problem is one line in :attr:`Plugins.problems`: shown by ``kdbench plugins``,
warned about by every command and written into every record's provenance.
Every hook is called through pluggy's hook callers, never by calling an implementation
directly.

Two ways in: :func:`load_plugins` loads every plugin of the ``kdbench`` group and fills
the registry of models, losses, datasets and executors (torch comes with them);
:func:`command_line_plugins` loads only the built-ins that import no torch and the
modules of the ``kdbench.cli`` entry-point group, which add commands and report
formats, so ``kdbench --help`` and ``kdbench report`` start fast whatever else is
installed (a model zoo's plugin imports its framework)::

    [project.entry-points."kdbench.cli"]
    my_plugin = "my_package.kdbench_commands"   # imports no torch
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as md
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin came from."""

    name: str
    version: str
    source: str  # "built-in" or the distribution's name


@dataclass
class Plugins:
    """Everything that was loaded: the registry, the plugin list and what went wrong."""

    registry: Registry
    infos: list[PluginInfo]
    failures: list[tuple[str, str]] = field(default_factory=list)

    def versions(self) -> dict[str, str]:
        return {info.name: info.version for info in self.infos}

    @property
    def problems(self) -> list[str]:
        """Every skipped plugin and disabled registration, one line each."""
        sources = {info.name: info.source for info in self.infos}
        skipped = [f"plugin '{name}' {error}" for name, error in self.failures]
        return skipped + [clash.message(sources) for clash in self.registry.clashes]


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


def _load(
    pm: pluggy.PluginManager, builtins: tuple[str, ...], strict: bool, group: str
) -> tuple[list[PluginInfo], list[tuple[str, str]]]:
    """Register ``builtins`` and every installed plugin of entry-point ``group`` into ``pm``."""
    from kdbench import __version__

    infos: list[PluginInfo] = []
    failures: list[tuple[str, str]] = []
    for module_name in builtins:
        name = module_name.rsplit(".", 1)[1]
        pm.register(importlib.import_module(module_name), name=name)
        infos.append(PluginInfo(name, __version__, "built-in"))

    for ep in md.entry_points(group=group):
        dist = ep.dist.name if ep.dist else "unknown distribution"
        version = ep.dist.version if ep.dist else "unknown"
        try:
            if pm.get_plugin(ep.name) is not None:
                raise PluginError(f"a plugin named '{ep.name}' is already loaded")
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party plugin
            message = f"{type(exc).__name__}: {exc}"
            if strict:
                raise PluginError(f"plugin '{ep.name}' ({dist}) failed to load: {message}") from exc
            failures.append((ep.name, f"({dist}) failed to load and is skipped: {message}"))
            continue
        infos.append(PluginInfo(ep.name, version, dist))

    for name, error in _unknown_hooks(pm):
        if strict:
            raise PluginError(f"plugin '{name}' implements an unknown hook: {error}")
        failures.append((name, f"implements an unknown hook {error} and is skipped"))
        pm.unregister(name=name)
        infos = [info for info in infos if info.name != name]
    return infos, failures


def call_each(
    pm: pluggy.PluginManager, hook: str, make_register: Callable[[str], Any]
) -> list[tuple[str, Exception]]:
    """Call ``hook`` through pluggy once per implementing plugin, each with its own
    ``register`` (``make_register(plugin_name)``), so what it registers is its own.

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
        others = [p for p in plugins if p is not pm.get_plugin(name)]
        try:
            pm.subset_hook_caller(hook, remove_plugins=others)(register=make_register(name))
        except Exception as exc:  # noqa: BLE001 - one plugin's bug must not stop the rest
            failed.append((name, exc))
    return failed


def load_plugins(*, strict: bool | None = None) -> Plugins:
    """Load built-ins and installed plugins and fill a fresh registry."""
    strict = _strict(strict)
    pm = make_plugin_manager()
    infos, failures = _load(pm, BUILTIN_PLUGINS, strict, ENTRY_POINT_GROUP)
    registry = Registry()
    for kind, make_register in [("models", registry.model_registrar)] + [
        (kind, functools.partial(registry.registrar, kind)) for kind in KINDS
    ]:
        for plugin, exc in call_each(pm, f"register_{kind}", make_register):
            if strict:
                raise PluginError(f"plugin '{plugin}' failed to register {kind}: "
                                  f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
            failures.append(
                (plugin, f"failed to register {kind} (kept what it registered "
                 f"before): {type(exc).__name__}: {exc}")
            )  # fmt: skip
    plugins = Plugins(registry, infos, failures)
    if strict and registry.clashes:
        raise PluginError(plugins.problems[0])
    for problem in plugins.problems:
        warnings.warn(f"kdbench: {problem}", stacklevel=2)
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


@functools.cache
def command_line_plugins() -> pluggy.PluginManager:
    """The plugins the command line asks for commands and formats: the built-ins that
    import no torch and the ``kdbench.cli`` entry points.

    Loaded once per process; a plugin that fails to load is reported as by
    :func:`load_plugins`.
    """
    pm = make_plugin_manager()
    _, failures = _load(pm, COMMAND_LINE_PLUGINS, _strict(None), COMMAND_LINE_GROUP)
    for name, error in failures:
        warnings.warn(f"kdbench: plugin '{name}' {error}", stacklevel=2)
    return pm


def add_commands(cli: Any) -> None:
    """Let every plugin add commands to the ``kdbench`` click group."""
    command_line_plugins().hook.register_commands(cli=cli)


@functools.cache
def report_formats() -> dict[str, ReportFormat]:
    """Report formats registered by plugins, by name (a name registered twice is an error)."""
    formats: dict[str, ReportFormat] = {}

    def registrar(plugin: str) -> Callable[..., None]:
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

    for plugin, exc in call_each(command_line_plugins(), "register_formats", registrar):
        if isinstance(exc, PluginError):
            raise exc
        warnings.warn(f"kdbench: plugin '{plugin}' failed to register formats: {exc}", stacklevel=2)
    return formats
