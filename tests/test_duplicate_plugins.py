"""Two distributions registering one name: the tool keeps working and says so everywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_plugins import REPO, kdbench, make_distribution, pip_install

from conftest import write_benchmark
from kdbench.core.plugins import load_plugins

CLASH = """
from kdbench import hookimpl
from kdbench_example_loss.plugin import LogitMSE


@hookimpl
def register_losses(register):
    register("logit_mse", LogitMSE)
    register("logit_mse_too", LogitMSE)
"""


@pytest.fixture(scope="module")
def clashing_site(tmp_path_factory) -> Path:
    """The example loss and a second distribution that registers its name again."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src")
    shutil.copytree(REPO / "plugins" / "kdbench-example-loss", source / "example")
    pip_install(source / "example", target)
    pip_install(make_distribution(source / "clash", "kdbench-clash", CLASH), target)
    return target


def test_plugins_command_exits_0_and_names_both_distributions(clashing_site, tmp_path):
    result = kdbench("plugins", site=clashing_site, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("problem:") == 1
    problem = " ".join(result.stdout.split("problem:")[1].split())
    assert "loss 'logit_mse' is registered twice" in problem
    assert "(kdbench-example-loss)" in problem and "(kdbench-clash)" in problem
    assert "the second is disabled" in problem
    assert all(len(line) <= 100 for line in result.stdout.splitlines())
    # The clashing distribution's other name still works.
    assert "logit_mse_too" in kdbench("list", "losses", site=clashing_site, cwd=tmp_path).stdout


def test_strict_plugins_make_a_clash_fatal(clashing_site, tmp_path):
    result = kdbench("list", "losses", site=clashing_site, cwd=tmp_path, strict=True)
    assert result.returncode == 2
    assert "registered twice" in result.stderr


@pytest.mark.slow
def test_records_and_reports_carry_the_plugin_problem(clashing_site, tmp_path):
    bench = write_benchmark(tmp_path)
    out = tmp_path / "out"
    run = kdbench("run", str(bench), "--out", str(out), "--quiet", site=clashing_site, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    for path in (out / "records").glob("*.json"):
        problems = json.loads(path.read_text())["provenance"]["plugin_problems"]
        assert any("'logit_mse' is registered twice" in p for p in problems)
    report = kdbench("report", str(out), "--no-reference", site=clashing_site, cwd=tmp_path)
    assert "when cells ran: loss 'logit_mse' is registered twice" in report.stdout


def test_a_plugin_whose_hook_raises_is_reported_and_the_rest_load(monkeypatch):
    from kdbench import hookimpl
    from kdbench.core import plugins as plugin_module

    class Raises:
        @hookimpl
        def register_losses(self, register):
            register("fine", object)
            raise RuntimeError("boom")

    real = plugin_module.make_plugin_manager

    def with_broken():
        pm = real()
        pm.register(Raises(), name="raises")
        return pm

    monkeypatch.setattr(plugin_module, "make_plugin_manager", with_broken)
    with pytest.warns(UserWarning, match="plugin 'raises' failed to register losses"):
        loaded = load_plugins(strict=False)
    assert "kd" in loaded.registry.names("losses") and "fine" in loaded.registry.names("losses")
    assert loaded.problems == [
        "plugin 'raises' failed to register losses (kept what it registered before): "
        "RuntimeError: boom"
    ]
