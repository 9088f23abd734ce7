"""Feature losses between networks of different depth distil the taps they pair."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kdbench.cli import cli

BENCH = """
[benchmark]
name = "pairs"
seeds = [0]

[datasets.digits]
test_fraction = 0.5

[recipe]
epochs = 1
batch_size = 128
optimizer = {{ name = "sgd", lr = 0.05 }}

[teacher_recipe]
epochs = 1
batch_size = 128
optimizer = {{ name = "sgd", lr = 0.05 }}

[[pairs]]
teacher = "cnn"
teacher_params = {{ width = 8, depth = 3 }}
student = "cnn"
student_params = {{ width = 4, depth = 2 }}

[losses.fitnets]
{fitnets}

[measure]
latency = false
flops = false
"""


def _record(tmp_path: Path, fitnets: str) -> dict:
    bench = tmp_path / "bench.toml"
    bench.write_text(BENCH.format(fitnets=fitnets), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    (record,) = [r for r in records if r["config"]["loss"]["name"] == "fitnets"]
    return record


def _regressor_params(s_channels: int, t_channels: int, kernel: int) -> int:
    """Conv weights and bias, then BatchNorm's weight and bias."""
    return s_channels * t_channels * kernel * kernel + t_channels + 2 * t_channels


def test_fitnets_between_a_3_stage_teacher_and_2_stage_student_distils_the_pair_asked_for(
    tmp_path: Path,
):
    record = _record(tmp_path, 'hint = "stage2"\nteacher_hint = "stage3"')
    assert record["status"] == "ok", record.get("error")
    assert record["protocol"]["features"] == ["stage2<-stage3"]
    # student stage2: 8 channels at 4x4 (8x8 digits pooled once); teacher stage3: 32 at 2x2
    # (pooled twice), so the regressor is a stride-2 3x3 conv from 8 to 32 channels.
    assert record["size"]["extra_params"] == _regressor_params(8, 32, 3)


def test_fitnets_by_default_pairs_each_networks_middle_stage(tmp_path: Path):
    record = _record(tmp_path, "")
    # student stage1: 4 channels at 4x4; teacher stage2: 16 channels at 2x2 (pooled, not
    # the last stage) -> a stride-2 3x3 conv.
    assert record["protocol"]["features"] == ["stage1<-stage2"]
    assert record["size"]["extra_params"] == _regressor_params(4, 16, 3)
