"""What plugins registered: names, the objects behind them, and their parameters.

A :class:`Registry` is filled by the ``register_*`` hooks and is the only place the
rest of kdbench looks names up, so "did you mean" and parameter checks live here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kdbench.core.errors import ConfigError, PluginError, did_you_mean
from kdbench.core.param_types import annotations_of, value_problem

KINDS = ("teachers", "students", "losses", "datasets", "executors", "trackers")
SINGULAR = {kind: kind.removesuffix("es") if kind == "losses" else kind[:-1] for kind in KINDS}

# Arguments the harness passes itself; they are not TOML parameters.
_HARNESS_ARGS = {
    "teachers": {"num_classes", "in_channels"},
    "students": {"num_classes", "in_channels"},
    "trackers": {"out_dir"},
}

_REQUIRED = inspect.Parameter.empty

# An unknown name's error lists every registered one up to this many, else points to
# ``kdbench list`` (a model zoo registers thousands).
_LISTED = 20


@dataclass(frozen=True)
class Entry:
    """One registered thing: a model factory, a loss class, a dataset factory or an executor."""

    kind: str
    name: str
    obj: Callable[..., Any]
    plugin: str
    description: str
    taps: Mapping[str, str] | Callable[[Any], Mapping[str, str]] = field(default_factory=dict)

    def taps_for(self, model: Any) -> dict[str, str]:
        """The feature taps of a built model (a registration may compute them from it)."""
        return dict(self.taps(model) if callable(self.taps) else self.taps)

    @property
    def params(self) -> dict[str, Any]:
        """TOML parameters and their defaults (``inspect.Parameter.empty`` when required)."""
        return {p.name: p.default for p in self._signature_params() if p.kind != p.VAR_KEYWORD}

    @property
    def accepts_any(self) -> bool:
        """True when the callable takes ``**kwargs`` and so any parameter."""
        return any(p.kind == p.VAR_KEYWORD for p in self._signature_params())

    @property
    def _target(self) -> Callable[..., Any]:
        """What takes the parameters: a class's constructor, or the factory itself."""
        return self.obj.__init__ if inspect.isclass(self.obj) else self.obj

    def _signature_params(self) -> list[inspect.Parameter]:
        skip = {"self"} | _HARNESS_ARGS.get(self.kind, set())
        params = inspect.signature(self._target).parameters.values()
        return [p for p in params if p.name not in skip and p.kind != p.VAR_POSITIONAL]

    @property
    def annotations(self) -> dict[str, Any]:
        """Each parameter's type annotation (``Annotated`` constraints kept), where declared."""
        return annotations_of(self._target)

    def check_params(self, given: Mapping[str, Any], *, file: str | None, key: str) -> None:
        """Raise the first of :meth:`param_errors`."""
        errors = self.param_errors(given, file=file, key=key)
        if errors:
            raise errors[0]

    def param_errors(
        self, given: Mapping[str, Any], *, file: str | None, key: str
    ) -> list[ConfigError]:
        """Unknown, missing and ill-typed or out-of-range parameters, one error each."""
        known = self.params
        accepted = ", ".join(known) or "none"
        errors = []
        if not self.accepts_any:
            errors += [
                ConfigError(
                    f"unknown parameter '{name}' for {SINGULAR[self.kind]} '{self.name}'"
                    f"{did_you_mean(name, known)}; accepted parameters: {accepted}",
                    file=file,
                    key=f"{key}.{name}",
                )
                for name in given
                if name not in known
            ]
        missing = [n for n, default in known.items() if default is _REQUIRED and n not in given]
        if missing:
            errors.append(
                ConfigError(
                    f"{SINGULAR[self.kind]} '{self.name}' needs parameter(s) "
                    f"{', '.join(missing)}; accepted parameters: {accepted}",
                    file=file,
                    key=key,
                )
            )
        annotations = self.annotations
        for name, value in given.items():
            problem = value_problem(annotations[name], value) if name in annotations else None
            if problem:
                errors.append(ConfigError(problem, file=file, key=f"{key}.{name}"))
        return errors


@dataclass(frozen=True)
class Clash:
    """A name registered a second time: ``kept`` has it, ``dropped`` is disabled."""

    kept: Entry
    dropped: Entry

    def message(self, sources: Mapping[str, str] | None = None) -> str:
        """One line naming both plugins (and their distributions, where ``sources`` tells)."""

        def who(entry: Entry) -> str:
            source = (sources or {}).get(entry.plugin)
            return f"plugin '{entry.plugin}'" + (f" ({source})" if source else "")

        return (
            f"{SINGULAR[self.kept.kind]} '{self.kept.name}' is registered twice: by "
            f"{who(self.kept)} and by {who(self.dropped)}; the second is disabled"
        )


class Registry:
    """Registered entries by kind; each name is unique within its kind.

    A name registered again is not an error at once: the first registration keeps it and
    the clash is listed in :attr:`clashes` for the plugin loader to report.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.clashes: list[Clash] = []
        # ``plugin 'x' (dist)`` of plugins that failed to load: an unknown name may be theirs.
        self.unloaded: list[str] = []

    def registrar(self, kind: str, plugin: str) -> Callable[..., None]:
        """The ``register`` callable handed to one plugin's ``register_<kind>`` hook."""

        def register(
            name: str,
            obj: Callable[..., Any],
            *,
            description: str | None = None,
            taps: Mapping[str, str] | Callable[[Any], Mapping[str, str]] | None = None,
        ) -> None:
            description = description or _first_line(obj)
            self.add(Entry(kind, name, obj, plugin, description, taps or {}))

        return register

    def model_registrar(self, plugin: str) -> Callable[..., None]:
        """The ``register`` of ``register_models``: one call registers teacher and student."""
        as_teacher = self.registrar("teachers", plugin)
        as_student = self.registrar("students", plugin)

        def register(name: str, obj: Callable[..., Any], **options: Any) -> None:
            as_teacher(name, obj, **options)
            as_student(name, obj, **options)

        return register

    def add(self, entry: Entry) -> None:
        if not isinstance(entry.name, str) or not entry.name:
            raise PluginError(
                f"plugin '{entry.plugin}' registered a {SINGULAR[entry.kind]} without a name"
            )
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None:
            # The first registration keeps the name, so one bad plugin cannot take the
            # command line (and `kdbench plugins`, which reports the clash) down with it.
            self.clashes.append(Clash(existing, entry))
            return
        self._entries[entry.kind][entry.name] = entry

    def get(
        self, kind: str, name: str, *, file: str | None = None, key: str | None = None
    ) -> Entry:
        """Look a name up; an unknown one is a :class:`ConfigError` with "did you mean"."""
        entries = self._entries[kind]
        if name in entries:
            return entries[name]
        raise ConfigError(self.unknown(kind, name), file=file, key=key)

    def unknown(self, kind: str, name: str) -> str:
        """One line: the name, a few close ones, what is registered (or where to list it)
        and which plugins failed to load, since one of them may provide it."""
        known = sorted(self._entries[kind])
        suggestion = did_you_mean(name, known, most=3)
        if len(known) <= _LISTED:
            registered = f"registered {kind}: {', '.join(known) or 'none'}"
        else:
            registered = f"{len(known)} {kind} are registered: kdbench list {kind} [PATTERN]"
        line = f"unknown {SINGULAR[kind]} '{name}'{suggestion}; {registered}"
        if self.unloaded:
            line += f"; {', '.join(self.unloaded)} failed to load, which may provide it"
        return line

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[Entry]:
        return [self._entries[kind][name] for name in self.names(kind)]

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        """What one plugin registered, by kind (kinds with nothing left out)."""
        found = {kind: [e.name for e in self.entries(kind) if e.plugin == plugin] for kind in KINDS}
        return {kind: names for kind, names in found.items() if names}


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
