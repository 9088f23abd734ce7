"""Plugin problems met while the command line starts: one ``kdbench:`` line each."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kdbench.cli import cli
from kdbench.core import plugins


class _Broken:
    """A ``kdbench.cli`` entry point whose module fails to import."""

    name, dist, group = "broken_cli", None, plugins.COMMAND_LINE_GROUP

    def load(self) -> object:
        raise ImportError("no such framework")


@pytest.fixture
def broken(monkeypatch):
    groups = {plugins.COMMAND_LINE_GROUP: [_Broken()]}
    monkeypatch.setattr(plugins.md, "entry_points", lambda group: groups.get(group, []))
    monkeypatch.setattr(cli, "_plugin_commands_added", False)
    monkeypatch.setattr(plugins, "_warned", set())
    plugins.command_line_plugins.cache_clear()
    plugins.report_formats.cache_clear()
    yield
    plugins.command_line_plugins.cache_clear()
    plugins.report_formats.cache_clear()


PROBLEM = (
    "plugin 'broken_cli' (unknown distribution) failed to load and is skipped: "
    "ImportError: no such framework"
)


def test_a_plugin_that_fails_to_load_for_help_is_one_kdbench_line(broken, monkeypatch):
    monkeypatch.delenv("KDBENCH_STRICT_PLUGINS", raising=False)
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"kdbench: {PROBLEM}"]
    assert "Usage:" in result.stdout


def test_strict_plugins_make_it_one_error_line_and_exit_2(broken, monkeypatch):
    monkeypatch.setenv("KDBENCH_STRICT_PLUGINS", "1")
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "kdbench: error: plugin 'broken_cli' (unknown distribution) failed to load: "
        "ImportError: no such framework"
    ]
