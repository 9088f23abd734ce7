"""Plugin parameters checked against their type annotations, before anything is built.

A plugin declares what a parameter accepts in its signature, e.g.
``temperature: Annotated[float, Gt(0)] = 4.0``; pydantic checks a TOML value against
that annotation, ``annotated_types`` metadata included. Checking is strict (a string is
never turned into a number) except that integers pass for floats and TOML arrays pass
for tuples, so what a user writes is what the plugin gets.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

from pydantic import PydanticSchemaGenerationError, TypeAdapter, ValidationError

# Strict errors that only mean "TOML has no such type" (tuples, paths): lax mode decides.
_CONTAINER_ONLY = {"tuple_type", "is_instance_of", "path_type", "set_type", "frozen_set_type"}

_COMPARISONS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
    "multiple_of": ("a multiple of", "multiple_of"),
}


def annotations_of(target: Any) -> dict[str, Any]:
    """Parameter annotations with ``Annotated`` metadata kept; none when they do not resolve.

    An annotation a plugin cannot resolve at run time (a name imported only for type
    checkers) is the plugin's business, so it is skipped rather than reported to the user.
    """
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable forward references, odd callables
        return {}
    hints.pop("return", None)
    return hints


def value_problem(annotation: Any, value: Any) -> str | None:
    """What is wrong with ``value`` for ``annotation`` (``must be > 0, got -4``), or None."""
    adapter = _adapter(annotation)
    if adapter is None:
        return None
    errors = _errors(adapter, value, strict=True)
    if errors and {e["type"] for e in errors} <= {"tuple_type"}:
        errors = _errors(adapter, _as_tuples(value), strict=True)
    if errors and {e["type"] for e in errors} <= _CONTAINER_ONLY:
        errors = _errors(adapter, value, strict=False)
    if not errors:
        return None
    return _describe(errors[0], value)


@functools.lru_cache(maxsize=512)
def _cached_adapter(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation)
    except (PydanticSchemaGenerationError, TypeError, NameError):
        return None  # a type pydantic cannot check (an nn.Module class...): not checked


def _adapter(annotation: Any) -> TypeAdapter | None:
    if annotation is Any:
        return None
    try:
        return _cached_adapter(annotation)
    except TypeError:  # unhashable metadata inside Annotated
        try:
            return TypeAdapter(annotation)
        except (PydanticSchemaGenerationError, TypeError, NameError):
            return None


def _errors(adapter: TypeAdapter, value: Any, *, strict: bool) -> list[dict[str, Any]]:
    try:
        adapter.validate_python(value, strict=strict)
    except ValidationError as exc:
        return list(exc.errors())
    return []


def _as_tuples(value: Any) -> Any:
    """TOML arrays as tuples, all the way down."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_tuples(v) for k, v in value.items()}
    return value


def _describe(error: dict[str, Any], value: Any) -> str:
    """One pydantic error as ``must be ...``, with where inside the value and what was given."""
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind in _COMPARISONS:
        symbol, bound = _COMPARISONS[kind]
        what = f"must be {symbol} {_number(ctx.get(bound))}"
    elif kind == "literal_error":
        what = f"must be {ctx.get('expected')}"
    else:
        what = error["msg"].replace("Input should", "must").replace("Value should", "must")
        what = what.replace("String should", "must").replace("List should", "must")
        what = what[0].lower() + what[1:] if what else what
    # Union members add their type name to the location; only list positions help a user.
    inner = "".join(f"[{p}]" for p in error["loc"] if isinstance(p, int))
    got = error.get("input", value) if inner else value
    return f"{inner + ': ' if inner else ''}{what}, got {shown(got)}"


def shown(value: Any, limit: int = 60) -> str:
    """A value's repr for a one-line message, cut short when long (a pasted blob)."""
    return shorten(repr(value), limit)


def shorten(text: str, limit: int = 160) -> str:
    """Text cut in the middle when longer than ``limit`` (a path of thousands of characters)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit * 2 // 3]}...{text[-(limit // 3 - 3) :]}"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
