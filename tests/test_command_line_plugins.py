"""The plugins the command line loads for commands and formats: both entry-point groups,
and the problems met while loading them, one ``kdbench:`` line each."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from kdbench import hookimpl
from kdbench.cli import cli
from kdbench.core import plugins


class _EntryPoint:
    """An installed distribution's entry point, as importlib.metadata hands it over."""

    def __init__(self, name: str, group: str, plugin: object) -> None:
        self.name, self.group, self.dist, self.module, self._plugin = name, group, None, "", plugin

    def load(self) -> object:
        if isinstance(self._plugin, Exception):
            raise self._plugin
        return self._plugin


@pytest.fixture
def installed(monkeypatch):
    """Install fake entry points: ``installed(entry_point, ...)``."""
    groups: dict[str, list[_EntryPoint]] = {}
    monkeypatch.setattr(plugins.md, "entry_points", lambda group: groups.get(group, []))
    monkeypatch.setattr(cli, "_plugin_commands_added", False)
    monkeypatch.setattr(plugins, "_warned", set())
    monkeypatch.delenv("KDBENCH_STRICT_PLUGINS", raising=False)

    def install(*entry_points: _EntryPoint) -> None:
        for ep in entry_points:
            groups.setdefault(ep.group, []).append(ep)
        plugins.command_line_plugins.cache_clear()
        plugins.report_formats.cache_clear()

    yield install
    plugins.command_line_plugins.cache_clear()
    plugins.report_formats.cache_clear()


BROKEN = _EntryPoint("broken_cli", plugins.COMMAND_LINE_GROUP, ImportError("no such framework"))


def test_a_plugin_that_fails_to_load_for_help_is_one_kdbench_line(installed):
    installed(BROKEN)
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "kdbench: plugin 'broken_cli' (unknown distribution) failed to load and is skipped: "
        "ImportError: no such framework"
    ]
    assert "Usage:" in result.stdout


def test_strict_plugins_make_it_one_error_line_and_exit_2(installed, monkeypatch):
    installed(BROKEN)
    monkeypatch.setenv("KDBENCH_STRICT_PLUGINS", "1")
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "kdbench: error: plugin 'broken_cli' (unknown distribution) failed to load: "
        "ImportError: no such framework"
    ]


class _Commands:
    @hookimpl
    def register_commands(self, cli):
        @cli.command(name="fast")
        def fast() -> None:
            click.echo("fast")


class _Formats:
    @hookimpl
    def register_formats(self, register):
        register("rows", lambda board: "rows\n", filename="rows.txt")


def test_one_module_in_both_groups_loads_once_and_a_shared_name_keeps_both(installed):
    commands, formats = _Commands(), _Formats()
    installed(
        _EntryPoint("shared", plugins.COMMAND_LINE_GROUP, commands),
        _EntryPoint("shared", plugins.ENTRY_POINT_GROUP, formats),
        _EntryPoint("again", plugins.ENTRY_POINT_GROUP, commands),
    )
    state = plugins.command_line_plugins()
    assert "rows" not in plugins.report_formats()  # its source names no hook: deferred
    assert plugins.load_deferred() == ["shared[kdbench]"]
    assert plugins.report_formats()["rows"].plugin == "shared"
    assert state.loaded.problems == []
    names = [name for name, _ in state.pm.list_name_plugin()]
    assert names.count("shared") == 1 and "again" not in names
    by_plugin = plugins.commands_by_plugin(click.Group)
    assert {plugin: sorted(added) for plugin, added in by_plugin.items()} == {
        "commands": ["schema"],
        "shared": ["fast"],
    }
