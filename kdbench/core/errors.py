"""The user-facing error types.

Anything a user can fix (a config file, a missing dataset, a broken plugin) raises a
subclass of :class:`KdbenchError`; the CLI prints it as one line and exits 2.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KdbenchError(Exception):
    """An error the user can fix; printed without a traceback."""


class ConfigError(KdbenchError):
    """A benchmark file is invalid: names the file, the key path and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        self.detail = message
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class DatasetNotFoundError(KdbenchError):
    """A dataset's files are not where they were looked for; says how to get them."""


class PluginError(KdbenchError):
    """A plugin failed to load or registered something invalid."""


class StorageError(KdbenchError):
    """A file could not be written or read (read-only, disk full, no permission, not a folder)."""

    def __init__(self, path: object, exc: OSError, action: str = "write") -> None:
        self.path = path
        super().__init__(f"cannot {action} {path}: {exc.strerror or exc}")


def did_you_mean(name: str, choices: Iterable[str], most: int = 1) -> str:
    """A ' (did you mean 'x'?)' suffix naming up to ``most`` close matches
    (``'a', 'b' or 'c'``), or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=most, cutoff=0.6)
    if not close:
        return ""
    quoted = [f"'{n}'" for n in close]
    either = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f" (did you mean {either}?)"
