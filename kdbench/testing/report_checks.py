"""``check_format`` and ``check_command``: report plugins run on a real leaderboard."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from kdbench.reports import Leaderboard, load_leaderboard
from kdbench.testing.samples import sample_results

RESULTS = "{results}"


def sample_leaderboard() -> Leaderboard:
    """The leaderboard of the shipped results (two pairs, ``ce`` and ``kd``, two seeds)."""
    return load_leaderboard(sample_results(), use_reference=False)


def _name(obj: Any) -> str:
    return getattr(obj, "__name__", None) or getattr(obj, "name", None) or repr(obj)


def check_format(render: Callable[[Leaderboard], str], filename: str | None = None) -> str:
    """Assert a report format's contract; return what it rendered.

    ``render(leaderboard)`` is called as ``kdbench report --format NAME`` calls it, on the
    leaderboard of real records: it must return non-empty text, the same text when
    called again (on the same leaderboard, which it must not change, and on a fresh one),
    and ``filename``, the file ``--out`` writes it to, must be a bare file name.
    """
    name = _name(render)
    board = sample_leaderboard()
    try:
        text = render(board)
    except Exception as exc:
        raise AssertionError(
            f"{name} raised {type(exc).__name__}: {exc} on a real leaderboard; see "
            "docs/plugins.md, 'What a format or command receives'"
        ) from exc
    assert isinstance(text, str), f"{name} returned {type(text).__name__}; return the text (str)"
    assert text.strip(), f"{name} returned empty text for a leaderboard of two pairs"
    again, fresh = render(board), render(sample_leaderboard())
    assert again == text == fresh, (
        f"{name} renders the same leaderboard differently twice; do not change the "
        "leaderboard and keep times and random numbers out of the output"
    )
    if filename is not None:
        bare = isinstance(filename, str) and filename and Path(filename).name == filename
        assert bare, (
            f"{name}'s filename {filename!r} must be a bare file name (--out writes it into "
            "the folder it is given)"
        )
    return text


def _command(command: click.Command | Callable[..., Any], name: str | None) -> click.Command:
    """The command itself, or the one a ``register_commands`` hook adds to a group."""
    if isinstance(command, click.Command):
        return command
    group = click.Group("kdbench")
    command(cli=group)
    added = dict(group.commands)
    assert added, f"{_name(command)}(cli) added no command; decorate one with @cli.command()"
    if name is None:
        assert len(added) == 1, (
            f"{_name(command)} adds {', '.join(added)}; pass name= to choose one to check"
        )
        name = next(iter(added))
    assert name in added, f"{_name(command)} adds no command {name!r} (it adds {', '.join(added)})"
    return added[name]


def check_command(
    command: click.Command | Callable[..., Any],
    args: Sequence[str] = (RESULTS,),
    *,
    name: str | None = None,
) -> str:
    """Assert a command plugin's contract; return its output on a real results folder.

    ``command`` is the click command, or the plugin's ``register_commands`` hook (then
    ``name`` picks the command where it adds several). ``--help`` must exit 0 and show
    the command's docstring; invoked with ``args`` (``"{results}"`` stands for a copy
    of a real results folder) it must exit 0 without raising.
    """
    cmd = _command(command, name)
    shown = CliRunner().invoke(cmd, ["--help"])
    assert shown.exit_code == 0, (
        f"'{cmd.name} --help' exited {shown.exit_code}: {shown.output.strip()[-300:]}"
    )
    assert (cmd.help or "").strip(), (
        f"command '{cmd.name}' has no help; give its function a docstring (it is --help)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        shutil.copytree(sample_results(), results)
        argv = [str(results) if arg == RESULTS else arg for arg in args]
        ran = CliRunner().invoke(cmd, argv)
    if ran.exception is not None and not isinstance(ran.exception, SystemExit):
        exc = ran.exception
        raise AssertionError(
            f"'{cmd.name} {' '.join(args)}' raised {type(exc).__name__}: {exc}; a user error "
            "should raise a kdbench error (one line), anything else is a bug"
        ) from exc
    assert ran.exit_code == 0, (
        f"'{cmd.name} {' '.join(args)}' on a results folder exited {ran.exit_code}: "
        f"{ran.output.strip()[-300:]}"
    )
    return ran.output
