"""Teachers: trained once and cached, loaded from checkpoints, accuracy always measured."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from click.testing import CliRunner

from conftest import write_benchmark
from kdbench.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, [*args, "--quiet"])


def with_checkpoint(folder: Path, name: str, model: str | None = None) -> Path:
    """The tiny benchmark in ``folder``, its teacher (the small cnn, or ``model``)
    loaded from ``folder/name``."""
    bench = write_benchmark(folder)
    teacher = 'teacher = "cnn"\nteacher_params = { width = 8 }'
    loaded = f'teacher = "{model}"' if model else teacher
    bench.write_text(bench.read_text().replace(teacher, f'{loaded}\nteacher_checkpoint = "{name}"'))
    return bench


def teacher_of(out: Path) -> dict:
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    infos = [r["teacher"] for r in records if r["teacher"]]
    assert infos
    return infos[0]


def test_cached_teacher_is_reused_by_a_later_run(tiny_benchmark, tmp_path):
    out = tmp_path / "out"
    first = run("teachers", "train", str(tiny_benchmark), "--out", str(out))
    assert first.exit_code == 0, first.output
    [weights] = (out / "teachers").glob("*.pt")
    stamp = weights.stat().st_mtime_ns
    assert "no " in first.output  # freshly trained, not cached

    result = run("run", str(tiny_benchmark), "--out", str(out))
    assert result.exit_code == 0, result.output
    info = teacher_of(out)
    assert info["cached"] is True and info["source"] == "train"
    assert weights.stat().st_mtime_ns == stamp
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["top1"] == info["top1"]


def test_checkpoint_round_trip_gives_the_same_accuracy(tiny_benchmark, tmp_path):
    out = tmp_path / "trained"
    assert run("run", str(tiny_benchmark), "--out", str(out)).exit_code == 0
    trained = teacher_of(out)
    checkpoint = tmp_path / "teacher.pt"
    state = torch.load(trained["weights"], weights_only=True)
    torch.save({"epoch": 3, "state_dict": state}, checkpoint)  # a full-checkpoint wrapper

    tiny_benchmark = with_checkpoint(tmp_path, "teacher.pt")
    out2 = tmp_path / "loaded"
    result = run("run", str(tiny_benchmark), "--out", str(out2))
    assert result.exit_code == 0, result.output
    loaded = teacher_of(out2)
    assert loaded["source"] == "checkpoint"
    assert loaded["top1"] == trained["top1"]

    assert loaded["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    from kdbench.builtin.models_small import cnn

    torch.save(cnn(10, 1, width=4).state_dict(), tmp_path / "small.pt")
    bench = with_checkpoint(tmp_path, "small.pt")
    result = run("run", str(bench), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "does not fit model 'cnn'" in result.output
    assert "shape mismatches" in result.output and "(4, 1, 3, 3) vs (8, 1, 3, 3)" in result.output


def test_checkpoint_with_code_in_it_is_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Path("x")}, tmp_path / "evil.pt")
    bench = with_checkpoint(tmp_path, "evil.pt")
    result = run("run", str(bench), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if "evil.pt" in line]
    assert "is refused" in line and "pathlib.PosixPath" in line


def test_missing_checkpoint_names_the_key(tmp_path):
    bench = with_checkpoint(tmp_path, "gone.pt")
    result = CliRunner().invoke(cli, ["validate", str(bench)])
    assert result.exit_code == 2
    assert "pairs[0].teacher_checkpoint" in result.output and "does not exist" in result.output


def test_a_reference_training_file_is_a_teacher_checkpoint(tmp_path):
    """RepDistiller's last-epoch file - options as an argparse.Namespace, weights under
    'model' - provisions a zoo teacher unchanged, and its accuracy is measured."""
    from kdbench.builtin.cifar_zoo import MODELS

    torch.manual_seed(0)
    teacher = MODELS["resnet8"](num_classes=10, in_channels=1)
    options = argparse.Namespace(model="resnet8", learning_rate=0.05, lr_decay_epochs=[150])
    checkpoint = tmp_path / "resnet8_last.pth"
    torch.save(
        {"opt": options, "model": teacher.state_dict(), "optimizer": {"state": {}}}, checkpoint
    )
    bench = with_checkpoint(tmp_path, "resnet8_last.pth", "resnet8")
    out = tmp_path / "out"
    result = run("teachers", "train", str(bench), "--out", str(out))
    assert result.exit_code == 0, result.output
    [meta] = [json.loads(p.read_text()) for p in (out / "teachers").glob("*.json")]
    assert meta["name"] == "resnet8" and meta["source"] == "checkpoint"
    assert meta["num_params"] == sum(p.numel() for p in teacher.parameters())
    assert meta["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    [row] = [line for line in result.output.splitlines() if line.startswith("resnet8 ")]
    assert row.split()[1:3] == ["checkpoint", f"{meta['top1']:.2f}"]


def test_a_reference_file_of_another_zoo_model_is_one_clear_line(tmp_path):
    from kdbench.builtin.cifar_zoo import MODELS

    weights = MODELS["resnet8"](num_classes=10, in_channels=1).state_dict()
    torch.save({"model": weights}, tmp_path / "resnet8.pth")
    bench = with_checkpoint(tmp_path, "resnet8.pth", "resnet14")
    result = run("teachers", "train", str(bench), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if "resnet8.pth" in line]
    assert "does not fit model 'resnet14'" in line and "missing keys: layer1.1." in line
