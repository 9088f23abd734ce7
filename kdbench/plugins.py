"""The plugin manager: loads built-in and installed plugins and builds the registry.

Nothing else in kdbench touches pluggy. Installed distributions are found through the
``kdbench`` entry-point group and loaded one at a time. No plugin can stop the others
(``KDBENCH_STRICT_PLUGINS=1`` makes each of these fatal instead):

- one that fails to import, implements an unknown hook or fails while registering is
  skipped;
- a name registered twice keeps its first registration (built-ins load first) and the
  later one is disabled.

Each problem is one line in :attr:`Plugins.problems`: shown by ``kdbench plugins``,
warned about by every command and written into every record's provenance.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from kdbench import hookspecs
from kdbench.errors import PluginError
from kdbench.registry import KINDS, Registry

ENTRY_POINT_GROUP = "kdbench"

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
    "kdbench.builtin.trackers_jsonl",
    "kdbench.builtin.trackers_tensorboard",
    "kdbench.builtin.trackers_mlflow",
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


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(*, strict: bool | None = None) -> Plugins:
    """Load built-ins and installed plugins and fill a fresh registry."""
    strict = os.environ.get("KDBENCH_STRICT_PLUGINS") == "1" if strict is None else strict
    pm = make_plugin_manager()
    from kdbench import __version__

    infos: list[PluginInfo] = []
    failures: list[tuple[str, str]] = []
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name.rsplit(".", 1)[1])
        infos.append(PluginInfo(module_name.rsplit(".", 1)[1], __version__, "built-in"))

    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
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

    registry = Registry()
    calls = [("models", impl, registry.model_registrar(impl.plugin_name))
             for impl in pm.hook.register_models.get_hookimpls()]  # fmt: skip
    for kind in KINDS:
        hook = getattr(pm.hook, f"register_{kind}")
        calls += [(kind, impl, registry.registrar(kind, impl.plugin_name))
                  for impl in hook.get_hookimpls()]  # fmt: skip
    for kind, impl, register in calls:
        try:
            impl.function(register=register)
        except Exception as exc:  # noqa: BLE001 - one plugin's bug must not stop the rest
            if strict:
                raise PluginError(f"plugin '{impl.plugin_name}' failed to register {kind}: "
                                  f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
            failures.append(
                (impl.plugin_name, f"failed to register {kind} (kept what it registered "
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
