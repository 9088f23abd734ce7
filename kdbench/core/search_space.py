"""Search spaces of a benchmark file: what ``[tune]`` may vary, one dimension per key.

A dimension is written as a one-key table: ``{ grid = [1, 2, 4] }`` (every value, in
order), ``{ choice = ["a", "b"] }`` (values a sampler picks from), ``{ uniform = [0.1,
0.9] }`` or ``{ log_uniform = [0.01, 0.1] }`` (a range; integer bounds sample integers).
Keys are a loss's parameters (``temperature``) or dotted recipe keys
(``"recipe.optimizer.lr"``). Plain data, no Optuna: the engine turns a dimension into
Optuna's suggestion (:mod:`kdbench.engine.tuning`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kdbench.core.errors import ConfigError, did_you_mean
from kdbench.core.param_types import shown

KINDS = ("grid", "choice", "uniform", "log_uniform")
RECIPE_PREFIX = "recipe."
EXAMPLE = "a table like { grid = [1, 2, 4] }, { choice = [...] }, { uniform = [0.1, 0.9] } " \
    "or { log_uniform = [0.01, 0.1] }"  # fmt: skip


@dataclass(frozen=True)
class Dimension:
    """One searched key: its kind and its values (grid, choice) or bounds (the ranges)."""

    kind: str
    values: tuple[Any, ...]

    @property
    def points(self) -> tuple[Any, ...] | None:
        """The values a grid or choice may take; None for a range."""
        return self.values if self.kind in ("grid", "choice") else None

    @property
    def integer(self) -> bool:
        """A range with integer bounds samples integers."""
        return self.points is None and all(type(v) is int for v in self.values)

    def contains(self, value: Any) -> bool:
        if self.points is not None:
            return any(value == p and type(value) is type(p) for p in self.points)
        low, high = self.values
        return _number(value) and low <= value <= high and (type(value) is int or not self.integer)

    def __str__(self) -> str:
        return f"{{ {self.kind} = [{', '.join(shown(v) for v in self.values)}] }}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_dimension(spec: Any, *, file: str | None, key: str) -> Dimension:
    """One dimension of a search table; a mistake is one :class:`ConfigError`."""
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"must be {EXAMPLE}; got {shown(spec)}", file=file, key=key)
    unknown = [k for k in spec if k not in KINDS]
    if unknown:
        raise ConfigError(
            f"unknown search kind '{unknown[0]}'{did_you_mean(unknown[0], KINDS)}; "
            f"expected one of: {', '.join(KINDS)}",
            file=file,
            key=f"{key}.{unknown[0]}",
        )
    if len(spec) > 1:
        raise ConfigError(f"give one kind per key, got {', '.join(spec)}", file=file, key=key)
    kind, values = next(iter(spec.items()))
    where = f"{key}.{kind}"
    if not isinstance(values, list) or not values:
        raise ConfigError(f"must be a non-empty list, got {shown(values)}", file=file, key=where)
    if kind in ("grid", "choice"):
        bad = [v for v in values if isinstance(v, dict | list)]
        if bad:
            raise ConfigError(
                f"values must be numbers, strings or booleans, got {shown(bad[0])}",
                file=file,
                key=where,
            )
        if len({(type(v), v) for v in values}) != len(values):
            raise ConfigError(f"values repeat in {shown(values)}", file=file, key=where)
        return Dimension(kind, tuple(values))
    if len(values) != 2 or not all(_number(v) for v in values):
        raise ConfigError(
            f"must be two numbers [low, high], got {shown(values)}", file=file, key=where
        )
    low, high = values
    if not low < high:
        raise ConfigError(f"low must be below high, got {shown(values)}", file=file, key=where)
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(f"a log range needs low > 0, got {shown(values)}", file=file, key=where)
    return Dimension(kind, (low, high))


def parse_space(
    table: Any, *, file: str | None, key: str
) -> tuple[dict[str, Dimension], list[ConfigError]]:
    """Every dimension of a search table that parses, and one error for each that does not."""
    if not isinstance(table, dict):
        return {}, [
            ConfigError(
                f"must be a table of searched keys, each {EXAMPLE}; got {shown(table)}",
                file=file,
                key=key,
            )
        ]
    space, errors = {}, []
    for name, spec in table.items():
        try:
            space[name] = parse_dimension(spec, file=file, key=f"{key}.{quoted(name)}")
        except ConfigError as exc:
            errors.append(exc)
    return space, errors


def quoted(name: str) -> str:
    """A dotted key as the file writes it: ``"recipe.optimizer.lr"`` keeps its quotes."""
    return f'"{name}"' if "." in name else name


def is_recipe_key(name: str) -> bool:
    return name.startswith(RECIPE_PREFIX)


def recipe_path(name: str) -> list[str]:
    """``recipe.optimizer.lr`` -> ``["optimizer", "lr"]``."""
    return name.removeprefix(RECIPE_PREFIX).split(".")


def recipe_value(recipe: dict[str, Any], name: str) -> Any:
    """``recipe.optimizer.lr`` in a recipe (a dict): ``recipe["optimizer"]["lr"]``."""
    value: Any = recipe
    for part in recipe_path(name):
        value = value[part]
    return value


def with_recipe_values(recipe: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``recipe`` with the recipe keys of ``values`` set (other keys ignored)."""
    out = copy.deepcopy(recipe)
    for name, value in values.items():
        if is_recipe_key(name):
            *parents, last = recipe_path(name)
            section = out
            for part in parents:
                section = section[part]
            section[last] = value
    return out


def nested(name: str, value: Any) -> dict[str, Any]:
    """A recipe key and value as a recipe override: ``{"optimizer": {"lr": value}}``."""
    out: Any = value
    for part in reversed(recipe_path(name)):
        out = {part: out}
    return out
