"""``--set KEY=VALUE`` on run, validate and teachers train: the file's values replaced,
checked as if written there, and recorded in the results folder's benchmark.toml."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_benchmark
from kdbench.cli import cli
from kdbench.core.errors import ConfigError
from kdbench.core.overrides import apply_overrides, parse_override

SETS = ["--set", "recipe.epochs=1", "--set", "benchmark.seeds=[0]",
        "--set", "losses.kd.temperature=2.0"]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "keys", "value"),
    [
        ("recipe.epochs=1", ("recipe", "epochs"), 1),
        ("recipe.optimizer.lr=0.05", ("recipe", "optimizer", "lr"), 0.05),
        ("datasets.cifar100.download=true", ("datasets", "cifar100", "download"), True),
        ("benchmark.seeds=[0, 1]", ("benchmark", "seeds"), [0, 1]),
        ('recipe.schedule={ name = "cosine" }', ("recipe", "schedule"), {"name": "cosine"}),
        ('benchmark.name="two words"', ("benchmark", "name"), "two words"),
        ("executor.name=pool", ("executor", "name"), "pool"),  # a bare word is a string
        ('losses."kd.v2".alpha=0.5', ("losses", "kd.v2", "alpha"), 0.5),  # quoted key keeps dots
    ],
)
def test_set_reads_dotted_keys_and_toml_values(text: str, keys: tuple, value: object):
    override = parse_override(text)
    assert (override.keys, override.value) == (keys, value)
    assert type(override.value) is type(value)  # 1 stays an int, 0.05 a float


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("recipe.epochs", "expected KEY=VALUE"),
        ("recipe.epochs=", "no value after '='"),
        ("recipe.epochs=1 2", "is not a TOML value"),
        ("[recipe=1", "is not a dotted key"),
    ],
)
def test_malformed_set_is_one_error_naming_it(text: str, says: str):
    with pytest.raises(ConfigError, match=re.escape(says)) as info:
        parse_override(text)
    assert str(info.value).startswith("--set: ") and "\n" not in str(info.value)


def test_set_makes_missing_tables_and_indexes_arrays_of_tables():
    raw = {"recipe": {"epochs": 5}, "pairs": [{"student": "a"}, {"student": "b"}]}
    sets = ["recipe.epochs=1", "recipe.optimizer.lr=0.1", "pairs.1.student=c"]
    result = apply_overrides(raw, [parse_override(text) for text in sets])
    assert result == {
        "recipe": {"epochs": 1, "optimizer": {"lr": 0.1}},
        "pairs": [{"student": "a"}, {"student": "c"}],
    }
    assert raw["recipe"] == {"epochs": 5} and raw["pairs"][1] == {"student": "b"}  # a copy


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("recipe.epochs.x=1", "recipe.epochs is the value 5, not a table"),
        ("pairs.2.student=c", "pairs is an array of 2"),
        ("pairs.first.student=c", "pairs is an array of 2"),
    ],
)
def test_set_inside_a_value_names_the_set(text: str, says: str):
    raw = {"recipe": {"epochs": 5}, "pairs": [{"student": "a"}, {"student": "b"}]}
    with pytest.raises(ConfigError, match=re.escape(says)):
        apply_overrides(raw, [parse_override(text)])


def test_validate_checks_set_values_as_it_checks_the_file(tiny_benchmark: Path):
    runner = CliRunner()
    bad = runner.invoke(cli, ["validate", str(tiny_benchmark), "--set", "recipe.epochs=0"])
    assert bad.exit_code == 2
    (line,) = bad.output.strip().splitlines()
    assert "(with --set): recipe.epochs:" in line and "greater than 0" in line

    typo = runner.invoke(cli, ["validate", str(tiny_benchmark), "--set", "recipe.epoch=1"])
    assert typo.exit_code == 2 and "did you mean 'epochs'" in typo.output

    good = runner.invoke(cli, ["validate", str(tiny_benchmark), *SETS])
    assert good.exit_code == 0, good.output
    assert "with 3 --set: ok (2 cells)" in good.output


def dry_run_ids(path: Path, out: Path, *args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--dry-run", *args])
    assert result.exit_code == 0, result.output
    return re.findall(r"^([0-9a-f]{12,})\s", result.output, flags=re.M)


def test_set_values_give_the_cells_of_the_file_edited_by_hand(tmp_path: Path):
    """The same experiment either way: the cell ids hash the effective config."""
    original = write_benchmark(tmp_path)
    edited_dir = tmp_path / "edited"
    edited_dir.mkdir()
    edited = write_benchmark(edited_dir, text=original.read_text(encoding="utf-8")
                             .replace("seeds = [0, 1]", "seeds = [0]")
                             .replace("epochs = 2", "epochs = 1")
                             .replace("temperature = 4.0", "temperature = 2.0"))  # fmt: skip
    by_hand = dry_run_ids(edited, tmp_path / "a")
    by_set = dry_run_ids(original, tmp_path / "b", *SETS)
    assert len(by_hand) == 2 and sorted(by_set) == sorted(by_hand)
    assert sorted(dry_run_ids(original, tmp_path / "c")) != sorted(by_hand)


@pytest.mark.slow
def test_run_records_the_values_set_and_resumes_with_them(tiny_benchmark: Path, tmp_path: Path):
    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(cli, ["run", str(tiny_benchmark), "--out", str(out), "-q", *SETS])
    assert first.exit_code == 0, first.output
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert len(records) == 2 and {r["status"] for r in records} == {"ok"}
    assert {r["config"]["recipe"]["epochs"] for r in records} == {1}
    (kd,) = [r for r in records if r["config"]["loss"]["label"] == "kd"]
    assert kd["config"]["loss"]["params"]["temperature"] == 2.0
    assert [len(r["history"]) for r in records] == [1, 1]

    # The folder's copy is what ran: the effective table, headed by each --set.
    copied = (out / "benchmark.toml").read_text(encoding="utf-8")
    assert "#   --set recipe.epochs=1" in copied and "#   --set benchmark.seeds=[0]" in copied
    table = tomllib.loads(copied)
    assert table["recipe"]["epochs"] == 1 and table["benchmark"]["seeds"] == [0]
    assert table["losses"]["kd"]["temperature"] == 2.0
    status = runner.invoke(cli, ["status", str(out)])
    assert status.exit_code == 0, status.output
    assert ": 2 cells" in status.output
    assert re.search(r"done\s+2\b", status.output) and re.search(r"pending\s+0\b", status.output)

    again = runner.invoke(cli, ["run", str(tiny_benchmark), "--out", str(out), "-q", *SETS])
    assert again.exit_code == 0, again.output
    assert "2 already done, 0 to run" in again.output
