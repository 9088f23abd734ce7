"""``--set KEY=VALUE``: change a benchmark file's values from the command line.

``--set recipe.epochs=1 --set datasets.cifar100.download=true`` is the file with those
two values replaced, checked exactly as if they had been written there. KEY is a dotted
path of TOML keys (a quoted part, ``pairs."a.b"``, keeps its dots); VALUE is a TOML
value (``1``, ``0.05``, ``true``, ``[0, 1]``, ``{ name = "sgd" }``, ``"text"``), and a
bare word that is no TOML value (``sgd``) is taken as a string. Missing tables are
made; a key under a value that is not a table is an error naming the ``--set``.

A run records what it ran: the results folder's ``benchmark.toml`` is the file with the
values set (:func:`overridden_text`), headed by a comment naming the source and each
``--set``.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kdbench.core.errors import ConfigError


@dataclass(frozen=True)
class Override:
    """One ``--set``: the dotted key's parts and the TOML value."""

    keys: tuple[str, ...]
    value: Any
    text: str  # as typed, for messages and the copied file's header

    @property
    def key(self) -> str:
        return ".".join(self.keys)


def parse_override(text: str) -> Override:
    """``"recipe.epochs=1"`` -> the keys and the value; one :class:`ConfigError` if malformed."""
    key_text, sep, value_text = text.partition("=")
    if not sep:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}", key="--set")
    keys = _split_key(key_text, text)
    return Override(keys, _value(value_text.strip(), text), text)


def _split_key(key_text: str, text: str) -> tuple[str, ...]:
    """TOML's own key grammar splits the path, so a quoted part keeps its dots."""
    try:
        table: Any = tomllib.loads(f"{key_text.strip()} = 0")
    except tomllib.TOMLDecodeError:
        raise ConfigError(
            f"{key_text.strip()!r} is not a dotted key (in {text!r})", key="--set"
        ) from None
    parts: list[str] = []
    while isinstance(table, dict):
        ((name, table),) = table.items()
        parts.append(name)
    return tuple(parts)


def _value(value_text: str, text: str) -> Any:
    if not value_text:
        raise ConfigError(f"no value after '=' in {text!r}", key="--set")
    try:
        return tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./:-]*", value_text):
            return value_text  # a bare word: the string it spells
        raise ConfigError(
            f"{value_text!r} is not a TOML value (in {text!r}); quote a string: "
            f"'{text.partition('=')[0]}=\"...\"'",
            key="--set",
        ) from None


def apply_overrides(raw: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    """A copy of the TOML table ``raw`` with every override set, in order."""
    result = copy.deepcopy(raw)
    for override in overrides:
        container: Any = result
        *path, last = override.keys
        for depth, key in enumerate([*path, last]):
            where = ".".join(override.keys[:depth]) or "the file"
            if isinstance(container, list):  # an array of tables: pairs.0.student
                if not (key.isdigit() and int(key) < len(container)):
                    raise ConfigError(
                        f"{where} is an array of {len(container)}; {override.text!r} needs "
                        f"an index from 0 to {len(container) - 1} after it",
                        key="--set",
                    )
                key = int(key)
            elif not isinstance(container, dict):
                raise ConfigError(
                    f"{where} is the value {container!r}, not a table, so "
                    f"{override.text!r} cannot set a key inside it",
                    key="--set",
                )
            if depth == len(path):
                container[key] = copy.deepcopy(override.value)
            elif isinstance(container, dict):
                container = container.setdefault(key, {})
            else:
                container = container[key]
    return result


def overridden_text(source_text: str, raw: dict[str, Any], source: str,
                   overrides: Sequence[Override]) -> str:  # fmt: skip
    """The benchmark file a run copies into its results folder: the source unchanged,
    or, with overrides, the effective table headed by where it came from."""
    if not overrides:
        return source_text
    import tomli_w

    header = [f"# {source} with these values set on the command line:"]
    header += [f"#   --set {override.text}" for override in overrides]
    return "\n".join(header) + "\n\n" + tomli_w.dumps(apply_overrides(raw, overrides))
