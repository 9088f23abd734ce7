"""`kdbench show` and `kdbench list`: what a name accepts and provides, in 100 columns."""

from __future__ import annotations

import re

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


def test_show_prints_an_optional_constrained_type_with_its_constraint():
    out = invoke("show", "dataset", "cifar10")
    rows = [line.split() for line in out.splitlines()]
    assert ["train_subset", "int", "|", "None", "None", ">=", "1"] in rows
    assert ["test_subset", "int", "|", "None", "None", ">=", "1"] in rows


def test_list_and_show_builtin_trackers_formats_and_commands():
    trackers = invoke("list", "trackers")
    assert "trackers_jsonl (built-in): 1 trackers" in trackers.splitlines()
    assert any(line.startswith("  jsonl(path=None)  ") for line in trackers.splitlines())
    tracker = invoke("show", "tracker", "tensorboard")
    assert tracker.splitlines()[0] == "tracker tensorboard  (plugin trackers_tensorboard, built-in)"
    assert ["log_dir", "str", "|", "None", "None"] in [
        line.split() for line in tracker.splitlines()
    ]
    formats = invoke("list", "formats", "js*")
    assert formats.splitlines()[0] == "formats_json (built-in): 1 formats"
    assert formats.splitlines()[1].startswith("  json  ")
    fmt = invoke("show", "format", "md")
    assert fmt.splitlines()[0] == "format md  (plugin kdbench, built-in)"
    commands = invoke("list", "commands", "--plugin", "commands")
    assert commands.splitlines() == [
        "commands (built-in): 1 commands",
        "  schema  Print the JSON Schema of a cell's record (docs/record.schema.json).",
    ]
    unknown = CliRunner().invoke(cli, ["show", "command", "shema"])
    assert unknown.exit_code == 2
    assert "unknown command 'shema' (did you mean 'schema'?)" in unknown.output


def test_an_unknown_model_is_one_short_line_with_a_few_close_names():
    result = CliRunner().invoke(cli, ["show", "student", "resnet_8"])
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert len(line) < 300, line
    assert "(did you mean 'resnet8'" in line
    assert line.endswith("students are registered: kdbench list students [PATTERN]")


def test_an_unknown_name_names_the_plugins_that_failed_to_load():
    from kdbench.core.registry import Registry

    registry = Registry()
    for n in range(500):
        registry.registrar("students", "zoo")(f"net{n}", object)
    registry.unloaded = ["plugin 'zoo2' (kdbench-zoo2)"]
    message = registry.unknown("students", "net5x")
    assert re.fullmatch(
        r"unknown student 'net5x' \(did you mean 'net5', 'net\d+' or 'net\d+'\?\); 500 "
        r"students are registered: kdbench list students \[PATTERN\]; plugin 'zoo2' "
        r"\(kdbench-zoo2\) failed to load, which may provide it",
        message,
    ), message
