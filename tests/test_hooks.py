"""Plugins add commands and report formats through pluggy, as the built-ins do."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kdbench import hookimpl
from kdbench.cli import cli
from kdbench.core import plugins
from kdbench.core.plugins import add_commands, call_each, make_plugin_manager, report_formats
from kdbench.core.registry import Registry
from kdbench.records.schema import json_schema

PUBLISHED = Path(__file__).resolve().parents[1] / "results" / "fashion_mnist"


class _EntryPoint:
    """An installed distribution's entry point, as importlib.metadata hands it over."""

    def __init__(self, name: str, plugin: object) -> None:
        self.name, self.dist, self._plugin = name, None, plugin

    def load(self) -> object:
        return self._plugin


class _Extras:
    @hookimpl
    def register_commands(self, cli):
        @cli.command(name="hello")
        def hello() -> None:
            click.echo("hello from a plugin")

    @hookimpl
    def register_formats(self, register):
        register("count", lambda board: f"{len(board.boards)} boards\n", filename="count.txt")


@pytest.fixture
def installed(monkeypatch):
    """``_Extras`` installed under the ``kdbench.cli`` entry-point group."""
    groups = {plugins.COMMAND_LINE_GROUP: [_EntryPoint("extras", _Extras())]}
    monkeypatch.setattr(plugins.md, "entry_points", lambda group: groups.get(group, []))
    plugins.command_line_plugins.cache_clear()
    report_formats.cache_clear()
    yield
    plugins.command_line_plugins.cache_clear()
    report_formats.cache_clear()


def test_builtin_schema_command_is_added_by_the_command_hook():
    group = click.Group()
    add_commands(group)
    assert sorted(group.commands) == ["schema"]
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    assert result.output == json_schema()
    assert "schema" in CliRunner().invoke(cli, ["--help"]).output


def test_builtin_json_format_is_registered_through_the_format_hook():
    (fmt,) = [f for f in report_formats().values() if f.name == "json"]
    assert (fmt.plugin, fmt.filename) == ("formats_json", "leaderboard.json")
    result = CliRunner().invoke(cli, ["report", str(PUBLISHED), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["format"] == "kdbench-leaderboard/1"


def test_an_installed_plugin_adds_a_command_and_a_format(installed, tmp_path):
    group = click.Group()
    add_commands(group)
    assert sorted(group.commands) == ["hello", "schema"]
    assert CliRunner().invoke(group, ["hello"]).output == "hello from a plugin\n"
    result = CliRunner().invoke(cli, ["report", str(PUBLISHED), "--format", "count"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "1 boards\n\n"
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", str(PUBLISHED), "--out", str(out), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (out / "count.txt").read_text() == "1 boards\n"
    assert json.loads((out / "leaderboard.json").read_text())["pairs"]


def test_register_hooks_run_through_pluggy_with_the_plugins_wrappers():
    calls = []

    class Loss:
        pass

    class Wrapped:
        @hookimpl(specname="register_losses", wrapper=True)
        def around(self, register):
            calls.append("before")
            result = yield
            calls.append("after")
            return result

        @hookimpl
        def register_losses(self, register):
            calls.append("register")
            register("mine", Loss)

    pm = make_plugin_manager()
    pm.register(Wrapped(), name="wrapped")
    registry = Registry()
    call_each(pm, "register_losses", lambda name: registry.registrar("losses", name))
    assert calls == ["before", "register", "after"]
    assert registry.get("losses", "mine").plugin == "wrapped"


def test_each_plugin_is_credited_with_what_it_registered():
    class Loss:
        pass

    def plugin(name: str) -> object:
        class One:
            @hookimpl
            def register_losses(self, register):
                register(name, Loss)

        return One()

    pm = make_plugin_manager()
    pm.register(plugin("a_loss"), name="first")
    pm.register(plugin("b_loss"), name="second")
    registry = Registry()
    call_each(pm, "register_losses", lambda name: registry.registrar("losses", name))
    assert registry.by_plugin("first") == {"losses": ["a_loss"]}
    assert registry.by_plugin("second") == {"losses": ["b_loss"]}


def test_plugins_command_lists_the_formats_a_plugin_registered():
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("formats_json ")]
    assert line.split()[-2:] == ["formats:", "json"]
