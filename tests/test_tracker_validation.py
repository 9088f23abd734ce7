"""Validate builds the trackers a run would build: a bad tracker parameter is one line
naming the file and key, exit 2, before ``run`` writes anything; a good one leaves no
file behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TINY
from kdbench.cli import cli

GOOD = TINY.format(extra_pairs="")


def invoke(folder: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    monkeypatch.chdir(folder)
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def everything_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.parametrize(
    ("table", "key", "expected"),
    [
        ('[trackers.tensorboard]\nlogdir = "tb"\n', "trackers.tensorboard.logdir", "log_dir"),
        ("[trackers.jsonl]\npath = 3\n", "trackers.jsonl.path", "string"),
        ("[trackers.jsonl]\npath = 'tiny.toml/events.jsonl'\n", "trackers.jsonl.path", "folder"),
    ],
    ids=["unknown", "wrong-type", "unwritable-path"],
)
def test_a_bad_tracker_parameter_fails_validate_and_run_with_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, key: str, expected: str
):
    (tmp_path / "tiny.toml").write_text(GOOD + "\n" + table, encoding="utf-8")
    before = everything_under(tmp_path)
    for command in (["validate", "tiny.toml"], ["run", "tiny.toml", "--out", "out"]):
        code, output = invoke(tmp_path, monkeypatch, *command)
        errors = [line for line in output.splitlines() if line.startswith("kdbench: error:")]
        assert code == 2, output
        assert len(errors) == 1, output
        assert errors[0].startswith(f"kdbench: error: tiny.toml: {key}: "), errors[0]
        assert expected in errors[0]
        assert "Traceback" not in output
    assert everything_under(tmp_path) == before  # no out/, no benchmark.toml, no events


def test_a_tracker_that_fails_to_build_fails_validate_before_run_writes_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pytest.importorskip("mlflow")
    table = '[trackers.mlflow]\ntracking_uri = "nosuchscheme://store"\n'
    (tmp_path / "tiny.toml").write_text(GOOD + "\n" + table, encoding="utf-8")
    for command in (["validate", "tiny.toml"], ["run", "tiny.toml", "--out", "out"]):
        code, output = invoke(tmp_path, monkeypatch, *command)
        assert code == 2, output
        assert "kdbench: error: tiny.toml: trackers.mlflow.tracking_uri: " in output
        assert "nosuchscheme" in output
    assert not (tmp_path / "out").exists()


def test_validate_builds_file_writing_trackers_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    tables = "[trackers.tensorboard]\n[trackers.mlflow]\n[trackers.jsonl]\npath = 'logs/ev.jsonl'\n"
    (tmp_path / "tiny.toml").write_text(GOOD + "\n" + tables, encoding="utf-8")
    before = everything_under(tmp_path)
    code, output = invoke(tmp_path, monkeypatch, "validate", "tiny.toml")
    assert code == 0, output
    assert "tiny.toml: ok" in output
    assert everything_under(tmp_path) == before
