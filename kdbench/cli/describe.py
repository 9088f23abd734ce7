"""What a registered plugin object accepts and provides, as text for ``kdbench show``/``list``.

Parameters are read from the signature (types, defaults, and the ``annotated_types``
constraints validation checks); a model's taps are found by building it once and
running one image through it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable
from typing import Any

import annotated_types as at

from kdbench.core.registry import Entry

_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("multiple_of", "multiple of"))


def type_name(annotation: Any) -> str:
    """``float`` for ``Annotated[float, Gt(0)]``, ``str | None`` for an optional string."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def constraint(annotation: Any) -> str:
    """The bounds an ``Annotated`` type carries, as ``> 0`` or ``>= 0, <= 1``; else ''."""
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
