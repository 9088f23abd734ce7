"""Bad benchmark files: exit 2, one line naming the file and key, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TINY, write_benchmark
from kdbench.cli import cli

GOOD = TINY.format(extra_pairs="")


def run_bad(tmp_path: Path, text: str) -> tuple[int, str, Path]:
    bench = write_benchmark(tmp_path, text=text)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    return result.exit_code, result.output, out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("batch_size = 128\noptimizer", "batch_sise = 128\noptimizer", 1),
            ["recipe.batch_sise", "unknown key 'batch_sise'", "did you mean 'batch_size'",
             "expected one of:"],
        ),
        (
            GOOD.replace('{ name = "sgd", lr = 0.05 }', '{ lr = "fast" }', 1),
            ["recipe.optimizer.lr", "valid number", "'fast'"],
        ),
        (
            GOOD.replace("batch_size = 128\noptimizer", "compile = 'fast'\noptimizer", 1),
            ["recipe.compile", "'reduce-overhead'", "'max-autotune'", "(got 'fast')"],
        ),
        (
            GOOD.replace("[losses.kd]", "[losses.kdd]"),
            ["losses.kdd", "unknown loss 'kdd'", "did you mean 'kd'"],
        ),
        (
            GOOD.replace("temperature = 4.0", "temprature = 4.0"),
            ["losses.kd.temprature", "did you mean 'temperature'", "accepted parameters:"],
        ),
        (
            GOOD.replace('student = "mlp"', 'student = "mpl"'),
            ["pairs[0].student", "unknown student 'mpl'", "did you mean 'mlp'"],
        ),
        (
            GOOD.replace("[datasets.digits]", "[datasets.digitz]"),
            ["datasets.digitz", "did you mean 'digits'"],
        ),
        (
            GOOD.replace('name = "tiny"', 'name = "../escape"'),
            ["benchmark.name", "should match pattern"],
        ),
        (GOOD.replace("[benchmark]", "[benchmark"), ["not valid TOML"]),
        ("\ufeff" + GOOD, ["starts with a UTF-8 byte-order mark (BOM)", "UTF-8 without BOM"]),
    ],
    ids=["unknown-key", "wrong-type", "wrong-choice", "unknown-loss", "loss-param", "unknown-model",
         "unknown-dataset", "unsafe-name", "toml-syntax", "utf8-bom"],
)  # fmt: skip
def test_bad_config_exits_2_and_names_file_and_key(tmp_path, text, expected):
    code, output, out = run_bad(tmp_path, text)
    assert code == 2, output
    assert str(tmp_path / "bench.toml") in output
    for fragment in expected:
        assert fragment in output
    assert len(output.strip().splitlines()) == 1  # one line, no traceback
    assert not out.exists()


def test_missing_dataset_says_how_to_get_it_and_writes_nothing(tmp_path):
    text = GOOD.replace(
        "[datasets.digits]", f'[datasets.fashion_mnist]\nroot = "{tmp_path / "nowhere"}"'
    )
    code, output, out = run_bad(tmp_path, text)
    assert code == 2, output
    assert "apt-get install dataset-fashion-mnist" in output
    assert "download = true" in output
    assert not out.exists()


def test_validate_accepts_a_good_file_and_counts_cells(tiny_benchmark):
    result = CliRunner().invoke(cli, ["validate", str(tiny_benchmark)])
    assert result.exit_code == 0
    assert "ok (4 cells)" in result.output


def test_missing_file_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "no such benchmark file" in result.output


@pytest.mark.parametrize("bench", sorted(Path("benchmarks").glob("*.toml")), ids=str)
def test_shipped_benchmarks_validate_up_to_datasets_absent_here(bench):
    """Validation loads datasets; CIFAR is not on every machine, and then only that is said.

    ImageNet's teacher weights are not either (its validation: test_imagenet_benchmark.py).
    """
    result = CliRunner().invoke(cli, ["validate", str(bench)])
    if result.exit_code != 0:
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2, result.output
        assert all(
            (": datasets.cifar" in line and "files not found" in line)
            or (bench.name == "imagenet.toml" and "teacher_checkpoint" in line)
            for line in lines
        )


@pytest.mark.slow
def test_shipped_cifar_benchmark_builds_every_model_on_cifar_files(tmp_path, monkeypatch):
    """With CIFAR-100 present (tiny stand-in files), every pair, loss and tap builds."""
    from test_datasets_files import write_cifar100

    write_cifar100(tmp_path / "data")
    bench = Path("benchmarks/cifar.toml").resolve()
    monkeypatch.chdir(tmp_path)  # the file's root = "data/" is read from here
    result = CliRunner().invoke(cli, ["validate", str(bench)])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "results").exists()


def test_run_on_an_invalid_file_writes_nothing_and_exits_2(tmp_path, monkeypatch):
    bench = write_benchmark(tmp_path, text=GOOD.replace("epochs = 2", "epochs = 0"))
    monkeypatch.chdir(tmp_path)  # the default results/<name>/ would be created here
    result = CliRunner().invoke(cli, ["run", str(bench), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "recipe.epochs" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.toml"]
