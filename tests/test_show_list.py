"""`kdbench show` and `kdbench list`: what a name accepts and provides, in 100 columns."""

from __future__ import annotations

from click.testing import CliRunner

from kdbench.cli import cli


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_show_model_prints_parameters_with_constraints_and_tap_shapes():
    out = invoke("show", "model", "cnn", "--input", "1x8x8")
    assert "plugin models_small, built-in" in out
    assert any(line.split() == ["width", "int", "16", ">=", "1"] for line in out.splitlines())
    # width 16: stage1 is pooled to 4x4, its pre-activation is the 8x8 map before the pool.
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["stage1"] == ["stages.0", "16x4x4"]
    assert rows["stage1_pre"] == ["stages.0.5:in", "16x8x8"]
    assert rows["stage2"] == ["stages.1", "32x4x4"] and rows["pool"] == ["pool", "32"]


def test_show_loss_prints_interval_constraints_and_the_whole_docstring():
    out = invoke("show", "loss", "kd")
    assert any(line.split()[:4] == ["alpha", "float", "0.9", ">="] for line in out.splitlines())
    assert ">= 0, <= 1" in out
    assert "needs a teacher: yes" in out
    assert "T^2" in out


def test_show_unknown_name_suggests_the_close_one():
    result = CliRunner().invoke(cli, ["show", "loss", "fitnet"])
    assert result.exit_code == 2
    assert "did you mean 'fitnets'" in result.output


def test_list_groups_by_plugin_and_filters_by_pattern_and_plugin():
    out = invoke("list", "students", "resnet3*")
    assert out.splitlines()[0] == "cifar_zoo (built-in): 2 students"
    assert {line.split()[0] for line in out.splitlines()[1:-1]} == {"resnet32", "resnet32x4"}
    assert out.splitlines()[-1] == "feature taps and their shapes: kdbench show student NAME"
    only = invoke("list", "losses", "--plugin", "losses_logit")
    assert only.splitlines()[0] == "losses_logit (built-in): 4 losses"
    names = {line.split()[0].split("(")[0] for line in only.splitlines()[1:]}
    assert names == {"dist", "dkd", "dkd_ls", "kd_ls"}


def test_list_sums_up_a_large_plugin_unless_asked_and_fits_100_columns():
    out = invoke("list", "students")
    assert all(len(line) <= 100 for line in out.splitlines())
    timm = [line for line in out.splitlines() if line.startswith("timm ")]
    if timm:  # kdbench-timm installed: one summary line, not a thousand rows
        assert len(out.splitlines()) < 60
        assert "--plugin timm or --all" in out
