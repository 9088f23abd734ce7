"""The plugin manager: loads built-in and installed plugins and calls their hooks.

Nothing else in kdbench touches pluggy. Installed distributions are found through the
``kdbench`` entry-point group and loaded one at a time: one that fails to import is
reported and skipped (``KDBENCH_STRICT_PLUGINS=1`` makes that fatal). Every hook is
called through pluggy's hook callers, never by calling an implementation directly.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from kdbench import hookspecs
from kdbench.errors import PluginError
from kdbench.registry import KINDS, Registry

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
    "kdbench.builtin.models_small",
    "kdbench.builtin.cifar_zoo",
    "kdbench.builtin.models_torchvision",
    "kdbench.builtin.losses_basic",
    "kdbench.builtin.losses_logit",
    "kdbench.builtin.losses_feature",
    "kdbench.builtin.losses_crd",
    "kdbench.builtin.losses_reviewkd",
    "kdbench.builtin.executors",
    "kdbench.builtin.executors_slurm",
    "kdbench.builtin.executors_ray",
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
    """Everything that was loaded: the registry, the plugin list and load failures."""

    registry: Registry
    infos: list[PluginInfo]
    failures: list[tuple[str, str]] = field(default_factory=list)

    def versions(self) -> dict[str, str]:
        return {info.name: info.version for info in self.infos}


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
            warnings.warn(f"kdbench: skipped plugin '{ep.name}' ({dist}): {message}", stacklevel=3)
            failures.append((ep.name, message))
            continue
        infos.append(PluginInfo(ep.name, version, dist))

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
    return infos, failures


def call_each(pm: pluggy.PluginManager, hook: str, make_register: Callable[[str], Any]) -> None:
    """Call ``hook`` through pluggy once per implementing plugin, each with its own
    ``register`` (``make_register(plugin_name)``), so what it registers is its own.

    Plugins are called in registration order (built-ins first), as pluggy orders them
    with ``tryfirst`` / ``trylast``; hook wrappers of the same plugin still apply.
    """
    impls = getattr(pm.hook, hook).get_hookimpls()
    callers = [impl for impl in impls if not (impl.hookwrapper or impl.wrapper)]
    names = list(dict.fromkeys(impl.plugin_name for impl in callers))
    plugins = [impl.plugin for impl in impls]
    for name in names:
        others = [p for p in plugins if p is not pm.get_plugin(name)]
        pm.subset_hook_caller(hook, remove_plugins=others)(register=make_register(name))


def load_plugins(*, strict: bool | None = None) -> Plugins:
    """Load built-ins and installed plugins and fill a fresh registry."""
    pm = make_plugin_manager()
    infos, failures = _load(pm, BUILTIN_PLUGINS, _strict(strict), ENTRY_POINT_GROUP)
    registry = Registry()
    call_each(pm, "register_models", registry.model_registrar)
    for kind in KINDS:
        call_each(pm, f"register_{kind}", functools.partial(registry.registrar, kind))
    return Plugins(registry, infos, failures)


@functools.cache
def command_line_plugins() -> pluggy.PluginManager:
    """The plugins the command line asks for commands and formats: the built-ins that
    import no torch and the ``kdbench.cli`` entry points.

    Loaded once per process; a plugin that fails to load is reported as by
    :func:`load_plugins`.
    """
    pm = make_plugin_manager()
    _load(pm, COMMAND_LINE_PLUGINS, _strict(None), COMMAND_LINE_GROUP)
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

    call_each(command_line_plugins(), "register_formats", registrar)
    return formats
