"""`kdbench new-plugin`: the written distribution installs and passes its own tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_plugins import REPO, kdbench, pip_install

from kdbench.cli import cli

# Report plugins at work once installed: (arguments, what they print).
USED = {
    "format": (["report", "--format", "best_first", "results/digits_cpu"], "  kd "),
    "command": (["best-of", "results/digits_cpu"], "digits: cnn(width=16) → cnn(width=8): kd "),
}


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "name"), [("loss", "my_kd"), ("model", "tiny_net"),
                                            ("dataset", "halves"), ("executor", "journal"),
                                            ("tracker", "top1_log"), ("format", "best_first"),
                                            ("command", "best_of")])  # fmt: skip
def test_scaffold_installs_into_a_target_and_its_tests_pass(kind: str, name: str, tmp_path: Path):
    made = CliRunner().invoke(cli, ["new-plugin", kind, name, "--dir", str(tmp_path / "src")])
    assert made.exit_code == 0, made.output
    folder = tmp_path / "src" / f"kdbench-{name.replace('_', '-')}"
    assert made.output.strip() == f"created {folder}"
    site = tmp_path / "site"
    pip_install(folder, site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    # -p: kdbench may be installed from a build older than its pytest11 entry point.
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "kdbench.testing.fixtures", "tests"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "failed" not in tests.stdout
    shown_name = name.replace("_", "-") if kind == "command" else name
    shown = kdbench("show", kind, shown_name, site=site, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"kdbench-{name.replace('_', '-')}" in shown.stdout.splitlines()[0]
    if kind in USED:
        args, line = USED[kind]
        used = kdbench(*args, site=site, cwd=REPO)
        assert used.returncode == 0, used.stderr
        assert line in used.stdout, used.stdout


def test_scaffold_refuses_a_name_that_is_not_a_module_and_an_existing_folder(tmp_path: Path):
    bad = CliRunner().invoke(cli, ["new-plugin", "loss", "My-Loss", "--dir", str(tmp_path)])
    assert bad.exit_code == 2 and "must be lower-case letters" in bad.output
    CliRunner().invoke(cli, ["new-plugin", "loss", "again", "--dir", str(tmp_path)])
    twice = CliRunner().invoke(cli, ["new-plugin", "loss", "again", "--dir", str(tmp_path)])
    assert twice.exit_code == 2 and "already exists" in twice.output
