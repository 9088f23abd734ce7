"""Commands, report formats and trackers from the ordinary ``kdbench`` entry-point group,
and plugins made for another kdbench version: real distributions installed with pip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_plugins import REPO, kdbench, make_distribution, pip_install

from kdbench import __version__

PUBLISHED = REPO / "results" / "fashion_mnist"

# Names its hooks in its own source: the command line loads it for --help and report.
EXTRAS = """
import click

from kdbench import hookimpl


def count(board):
    \"\"\"The number of leaderboards, one line.\"\"\"
    return f"{len(board.boards)} boards\\n"


@hookimpl
def register_commands(cli):
    @cli.command(name="hello")
    def hello() -> None:
        \"\"\"Greet from an ordinary kdbench plugin.\"\"\"
        click.echo("hello from the kdbench group")

    @cli.command(name="run")
    def run() -> None:
        \"\"\"Would take kdbench's own run.\"\"\"
        click.echo("not kdbench's run")


@hookimpl
def register_formats(register):
    register("count", count, filename="count.txt")
"""

# Its hooks live in a module the entry point's source does not name: found when asked for.
HIDDEN = "from kdbench_hidden.hooks import *  # noqa: F403\n"
HIDDEN_HOOKS = """
import click

from kdbench import hookimpl

__all__ = ["register_commands", "register_formats"]


@hookimpl
def register_commands(cli):
    @cli.command(name="whisper")
    def whisper() -> None:
        click.echo("found on demand")


@hookimpl
def register_formats(register):
    register("tally", lambda board: f"{len(board.boards)} tallied\\n", filename="tally.txt",
             description="the boards, counted")
"""

# Made for an older kdbench: loaded with a warning.
OLD = """
from kdbench import PositiveInt, hookimpl


class Every:
    \"\"\"Counts events, now and then.\"\"\"

    def __init__(self, out_dir, *, every: PositiveInt | None = None) -> None:
        self.every = every


@hookimpl
def register_trackers(register):
    register("every", Every)
"""

MISMATCH = (
    f"plugin 'kdbench_old' (kdbench-old 9.9.9) requires kdbench<{__version__} "
    f"but this is kdbench {__version__}; it may not work"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    src = tmp_path_factory.mktemp("src")
    pip_install(make_distribution(src / "extras", "kdbench-extras", EXTRAS), target)
    hidden = make_distribution(
        src / "hidden", "kdbench-hidden", HIDDEN, files={"hooks.py": HIDDEN_HOOKS}
    )
    pip_install(hidden, target)
    old = make_distribution(
        src / "old", "kdbench-old", OLD, dependencies=(f"kdbench<{__version__}",)
    )
    pip_install(old, target)
    return target


def test_a_kdbench_group_command_is_in_help_and_runs(site, tmp_path):
    help_ = kdbench("--help", site=site, cwd=tmp_path)
    assert help_.returncode == 0, help_.stderr
    assert "hello" in help_.stdout and "Greet from an ordinary kdbench plugin." in help_.stdout
    hello = kdbench("hello", site=site, cwd=tmp_path)
    assert (hello.returncode, hello.stdout) == (0, "hello from the kdbench group\n"), hello.stderr


def test_a_plugin_command_cannot_take_a_name_the_command_line_has(site, tmp_path):
    result = kdbench("--help", site=site, cwd=tmp_path)  # every plugin command is added
    assert result.returncode == 0, result.stderr
    assert "Would take kdbench's own run" not in result.stdout
    assert "Run every cell of the benchmark FILE" in result.stdout  # kdbench's own
    assert "kdbench: command 'run' of plugin 'kdbench_extras' is disabled" in result.stderr


def test_a_kdbench_group_format_is_accepted_by_report(site, tmp_path):
    result = kdbench("report", str(PUBLISHED), "--no-reference", "--format", "count",
                     site=site, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 boards\n\n"
    out = tmp_path / "out"
    result = kdbench("report", str(PUBLISHED), "--out", str(out), "--no-plots", site=site,
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out / "count.txt").read_text() == "1 boards\n"
    assert json.loads((out / "leaderboard.json").read_text())["pairs"]


def test_hooks_the_module_does_not_name_are_found_when_their_name_is_asked_for(site, tmp_path):
    whisper = kdbench("whisper", site=site, cwd=tmp_path)
    assert (whisper.returncode, whisper.stdout) == (0, "found on demand\n"), whisper.stderr
    result = kdbench("report", str(PUBLISHED), "--no-reference", "--format", "tally",
                     site=site, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 tallied\n\n"
    missing = kdbench("nosuch", site=site, cwd=tmp_path)
    assert missing.returncode == 2 and "No such command 'nosuch'" in missing.stderr


def test_plugins_lists_commands_formats_trackers_and_one_line_for_a_version_mismatch(
    site, tmp_path
):
    result = kdbench("plugins", site=site, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "kdbench-extras" in rows["kdbench_extras"]
    assert "formats: count; commands: hello" in rows["kdbench_extras"]
    assert "formats: tally; commands: whisper" in rows["kdbench_hidden"]
    assert "9.9.9" in rows["kdbench_old"] and "trackers: every" in rows["kdbench_old"]
    problems = [" ".join(p.split()) for p in result.stdout.split("problem: ")[1:]]
    assert problems == [MISMATCH]  # the plugins adding commands and formats are not broken
    assert [line for line in result.stderr.splitlines() if "kdbench_old" in line] == [
        f"kdbench: {MISMATCH}"
    ]
    strict = kdbench("list", "trackers", site=site, cwd=tmp_path, strict=True)
    assert strict.returncode == 2
    assert strict.stderr.strip() == f"kdbench: error: {MISMATCH}"


def test_list_and_show_formats_commands_and_trackers_of_plugins(site, tmp_path):
    formats = kdbench("list", "formats", site=site, cwd=tmp_path).stdout.splitlines()
    assert formats[formats.index("kdbench_extras (kdbench-extras): 1 formats") + 1].split() == [
        "count", "The", "number", "of", "leaderboards,", "one", "line."
    ]  # fmt: skip
    assert "kdbench_hidden (kdbench-hidden): 1 formats" in formats
    assert "  tally  the boards, counted" in formats
    assert "formats_json (built-in): 1 formats" in formats
    assert "kdbench (built-in): 4 formats" in formats
    commands = kdbench("list", "commands", "h*", site=site, cwd=tmp_path).stdout
    assert commands.splitlines() == [
        "kdbench_extras (kdbench-extras): 1 commands",
        "  hello  Greet from an ordinary kdbench plugin.",
    ]
    fmt = kdbench("show", "format", "count", site=site, cwd=tmp_path).stdout
    assert fmt.splitlines()[0] == "format count  (plugin kdbench_extras, kdbench-extras)"
    assert "The number of leaderboards, one line." in fmt and "file with --out: count.txt" in fmt
    cmd = kdbench("show", "command", "whisper", site=site, cwd=tmp_path).stdout
    assert cmd.splitlines()[0] == "command whisper  (plugin kdbench_hidden, kdbench-hidden)"
    tracker = kdbench("show", "tracker", "every", site=site, cwd=tmp_path)
    assert tracker.returncode == 0, tracker.stderr
    lines = tracker.stdout.splitlines()
    assert lines[0] == "tracker every  (plugin kdbench_old, kdbench-old)"
    assert "Counts events, now and then." in lines
    assert ["every", "int", "|", "None", "None", ">=", "1"] in [line.split() for line in lines]
