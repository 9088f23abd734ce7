"""What a registered plugin object accepts and provides, as text for ``kdbench show``/``list``.

Report formats and commands are not in the registry (the command line loads them
without torch); :func:`formats` and :func:`commands` describe them the same way.

Parameters are read from the signature (types, defaults, and the ``annotated_types``
constraints validation checks); a model's taps are found by building it once and
running one image through it.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import annotated_types as at
import click

from kdbench.core.registry import Entry

_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("multiple_of", "multiple of"))


def type_name(annotation: Any) -> str:
    """``float`` for ``Annotated[float, Gt(0)]``, ``int | None`` for an optional
    ``PositiveInt`` (its bound is in :func:`constraint`)."""
    if _is_union(annotation):
        return " | ".join(type_name(arg) for arg in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def constraint(annotation: Any) -> str:
    """The bounds an ``Annotated`` type carries, as ``> 0`` or ``>= 0, <= 1``; else ''.

    An optional type (``PositiveInt | None``) has the bounds of its constrained part.
    """
    if _is_union(annotation):
        parts = [constraint(arg) for arg in typing.get_args(annotation)]
        return ", ".join(dict.fromkeys(part for part in parts if part))
    if typing.get_origin(annotation) is not typing.Annotated:
        return ""
    parts = []
    for meta in typing.get_args(annotation)[1:]:
        items = meta if isinstance(meta, at.GroupedMetadata) else [meta]
        for item in items:
            parts += [
                f"{sign} {getattr(item, attr)}"
                for attr, sign in _BOUNDS
                if getattr(item, attr, None) is not None
            ]
    return ", ".join(parts)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def parameters(entry: Entry) -> list[list[str]]:
    """One row per TOML parameter: name, type, default (``required`` when none), constraint."""
    annotations = entry.annotations
    rows = []
    for name, default in entry.params.items():
        annotation = annotations.get(name)
        rows.append(
            [
                name,
                type_name(annotation) if annotation is not None else "-",
                "required" if default is inspect.Parameter.empty else repr(default),
                constraint(annotation) if annotation is not None else "",
            ]
        )
    if entry.accepts_any:
        rows.append(["**kwargs", "-", "-", "passed through"])
    return rows


def signature_line(entry: Entry) -> str:
    """``width=16, depth=2`` (required ones bare), for one-line listings."""
    parts = [
        name if default is inspect.Parameter.empty else f"{name}={default!r}"
        for name, default in entry.params.items()
    ]
    return ", ".join(parts + (["..."] if entry.accepts_any else []))


def tap_shapes(
    entry: Entry, params: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int = 10
) -> list[list[str]]:
    """Each declared tap of the built model: name, module path, per-image shape."""
    import torch

    from kdbench.engine.features import FeatureTaps

    channels, height, width = input_shape
    model = entry.obj(num_classes=num_classes, in_channels=channels, **params).eval()
    taps = entry.taps_for(model)
    hooks = FeatureTaps(model, taps, taps)
    with torch.no_grad(), hooks:
        model(torch.zeros(1, channels, height, width))
    shapes = hooks.pop()
    return [
        [name, path, "x".join(map(str, shapes[name].shape[1:])) if name in shapes else "not run"]
        for name, path in taps.items()
    ]


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def matching(names: Iterable[str], pattern: str | None) -> list[str]:
    """Names matching a shell pattern (``resnet*``), or containing it when it has no wildcard."""
    import fnmatch

    if not pattern:
        return list(names)
    if any(ch in pattern for ch in "*?["):
        return [n for n in names if fnmatch.fnmatch(n, pattern)]
    return [n for n in names if pattern in n]


@dataclass(frozen=True)
class Provided:
    """A report format or command: what ``kdbench list``/``show`` tell about it."""

    name: str
    plugin: str
    description: str
    doc: str = ""
    details: tuple[str, ...] = ()


def formats() -> dict[str, Provided]:
    """Every report format by name: the built-in ones and those plugins registered
    (``kdbench``-group plugins not loaded yet are loaded)."""
    from kdbench.core.plugins import load_deferred, report_formats
    from kdbench.reporting.report import BUILTIN_FORMATS

    load_deferred()
    found = {name: Provided(name, "kdbench", text) for name, text in BUILTIN_FORMATS.items()}
    for fmt in report_formats().values():
        doc = inspect.getdoc(fmt.render) or ""
        description = fmt.description or _first(doc)
        details = (f"file with --out: {fmt.filename}",)
        found[fmt.name] = Provided(fmt.name, fmt.plugin, description, doc, details)
    return found


def commands(cli: click.Group) -> dict[str, Provided]:
    """Every command by name: those of ``cli`` itself (plugin "kdbench") and those
    plugins add (``kdbench``-group plugins not loaded yet are loaded)."""
    from kdbench.core.plugins import commands_by_plugin

    by_plugin = commands_by_plugin(click.Group)
    theirs = {name for added in by_plugin.values() for name in added}
    owned = [("kdbench", name, cmd) for name, cmd in cli.commands.items() if name not in theirs]
    owned += [
        (plugin, name, cmd) for plugin, added in by_plugin.items() for name, cmd in added.items()
    ]
    found = {}
    for plugin, name, cmd in owned:
        doc = inspect.cleandoc(cmd.help or "")
        found[name] = Provided(name, plugin, cmd.get_short_help_str(limit=80), doc)
    return found


def _first(doc: str) -> str:
    return doc.strip().splitlines()[0] if doc.strip() else ""
