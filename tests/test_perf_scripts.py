"""The performance scripts still run end to end (their numbers are not checked here).

``benchmarks/perf/gpu.sh`` is run where a GPU is lent, rarely; these keep its pieces
from rotting in between, on a few images on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``benchmarks/perf/<name>`` from the repository root; its stdout on success."""
    done = subprocess.run(
        [sys.executable, f"benchmarks/perf/{name}", *args],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_gpu_script_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(REPO / "benchmarks/perf/gpu.sh")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_kd_step_runs_every_variant_and_projects_a_cell(tmp_path: Path):
    stdout = run_script(
        "kd_step.py", "--device", "cpu", "--pair", "fashion", "--batch", "8", "16",
        "--images", "32", "--workers", "0", "--out", str(tmp_path), "--tag", "_smoke",
    )  # fmt: skip
    result = json.loads((tmp_path / "kd_step_cpu_smoke.json").read_text())
    variants = {"reference", "minimal", "kdbench", "kdbench+cache"}
    assert [row["batch"] for row in result["rows"]] == [8, 16]
    for row in result["rows"]:
        assert row["images"] == 32 and row["steps"] == 32 // row["batch"]
        assert all(row[f"{v}_img_s"] > 0 for v in variants)
        assert set(row["projected_240_epoch_cifar100_minutes"]) == variants
        assert row["teacher_bn_folded"] == 4  # cnn: two conv-BatchNorm pairs in each of 2 stages
    assert "projected 240 epochs x 50,000 images" in stdout


@pytest.mark.slow
def test_eval_cost_times_evaluation_against_training_epochs(tmp_path: Path):
    stdout = run_script(
        "eval_cost.py", "--device", "cpu", "--steps", "1", "--eval-images", "64",
        "--eval-batch", "32", "--repeats", "1", "--out", str(tmp_path),
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    result = json.loads((tmp_path / "eval_cost_cpu.json").read_text())
    assert result["kd_full_seconds"] > result["ce_full_seconds"] > 0  # the teacher costs
    assert (
        result["eval_32_vs_kd_epoch"] == result["eval_32_full_seconds"] / result["kd_full_seconds"]
    )
    assert len(result["load_average_before"]) == 3
    assert "% of a kd epoch" in stdout


@pytest.mark.slow
def test_checkpoint_cost_times_checkpoint_writes_against_training(tmp_path: Path):
    run_script(
        "checkpoint_cost.py", "--epochs", "3", "--repeats", "1", "--saves", "1",
        "--out", str(tmp_path), env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    cell = json.loads((tmp_path / "checkpoint_cost_cpu.json").read_text())["digits_cell"]
    assert cell["epochs"] == 3 and cell["saves_per_run"] == [2]  # none after the last epoch
    assert (
        cell["save_share_of_training"]
        == cell["save_seconds_per_run"][0] / cell["train_seconds_off"][0]
    )
    assert cell["checkpoint_bytes"] > 0


@pytest.mark.slow
def test_imagenet_throughput_times_both_loops_on_one_and_two_ranks(tmp_path: Path):
    import csv

    stdout = run_script(
        "imagenet_throughput.py", "--image-size", "32", "--batch", "4", "--steps", "1",
        "--workers", "0", "--repeats", "1", "--classes", "2", "--threads", "1",
        "--out", str(tmp_path), "--tag", "_smoke",
    )  # fmt: skip
    with open(tmp_path / "imagenet_throughput_cpu_smoke.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    found = {(r["variant"], int(r["world"])) for r in rows}
    assert found == {(v, w) for v in ("kdbench", "mdistiller") for w in (1, 2)}
    for row in rows:
        assert float(row["img_s"]) > 0 and float(row["median_s"]) > 0
        assert int(row["images"]) == 4 and int(row["image_size"]) == 32
    summary = (tmp_path / "imagenet_throughput_cpu_smoke.md").read_text()
    assert "load average" in summary and "synthetic" in summary
    assert "2 rank(s): kdbench / mdistiller" in stdout


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_logit_store_script_builds_once_and_a_second_process_reads(tmp_path: Path):
    stdout = run_script(
        "logit_store.py", "--epochs", "1", "--train-subset", "40", "--test-subset", "20",
        "--out", str(tmp_path), "--tag", "_smoke", env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    result = json.loads((tmp_path / "logit_store_fashion_cpu_smoke.json").read_text())
    rows = result["rows"]
    assert list(rows) == ["ce-only", "plain", "kdbench", "rerun"]
    assert result["kd_cells"] == 12 and result["views"] == 1
    # the first seed's lockstep group builds the store, the other seeds read it
    assert rows["kdbench"]["store"] == {"built": 4, "read": 8}
    assert rows["rerun"]["store"] == {"read": 12}  # another process: no teacher at all
    assert rows["plain"]["teacher_image_forwards"] == 12 * 40
    assert rows["kdbench"]["teacher_image_forwards"] == 40
    assert rows["rerun"]["teacher_image_forwards"] == rows["ce-only"]["teacher_image_forwards"] == 0
    assert rows["kdbench"]["ce_cells_charged"] == rows["rerun"]["ce_cells_charged"] == 3
    assert result["plain_over_kdbench"] == (
        rows["plain"]["seconds_per_kd_cell"] / rows["kdbench"]["seconds_per_kd_cell"]
    )
    assert result["records_equal_plain"] is True
    assert "plain / kdbench" in stdout


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_tuning_cost_script_runs_the_same_trials_alone_with_a_teacher_forward_each(
    tmp_path: Path,
):
    stdout = run_script(
        "tuning_cost.py", "--trials", "2", "--train-subset", "60", "--test-subset", "20",
        "--out", str(tmp_path), "--tag", "_smoke", env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    result = json.loads((tmp_path / "tuning_cost_cpu_smoke.json").read_text())
    rows = result["rows"]
    assert set(rows) == {"kdbench", "kdbench_whole_run", "independent"}
    trial_images = result["trial_train_images"]
    assert trial_images + result["validation_images"] == 60 and result["validation_images"] > 0
    # 4 logit losses and the ce baseline, 2 trials each, one round
    assert result["trials"] == 10 and result["kd_trials"] == 8
    # the KD trials train in one lockstep group, the ce trials (no teacher) in another
    assert result["lockstep_groups"] == [[2, 1], [8, 1]]
    assert rows["kdbench"]["store"] == {"built": 8}  # one build serves every KD trial
    assert rows["kdbench"]["teacher_image_forwards"] == trial_images
    assert rows["independent"]["teacher_image_forwards"] == 8 * trial_images
    assert result["independent_over_kdbench_teacher_forwards"] == 8
    assert result["independent_over_kdbench_seconds"] == (
        rows["independent"]["seconds"] / rows["kdbench"]["seconds"]
    )
    assert result["val_top1_equal"] == 10 and result["val_top1_differ"] == 0
    assert rows["kdbench_whole_run"]["final_cells"] == 5
    assert (tmp_path / "tuning_cost_cpu_smoke.txt").read_text() in stdout
    assert "independent / kdbench" in stdout


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_logit_store_script_compares_the_lazy_store_with_the_online_teacher(tmp_path: Path):
    stdout = run_script(
        "logit_store.py", "--lazy", "--epochs", "1", "--train-subset", "40", "--test-subset",
        "20", "--crop-padding", "1", "--out", str(tmp_path), "--tag", "_smoke",
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    result = json.loads((tmp_path / "logit_store_lazy_fashion_cpu_smoke.json").read_text())
    rows = result["rows"]
    assert list(rows) == ["online", "lazy", "lazy-rerun", "whole", "whole-rerun"]
    assert result["records_equal"] is True and result["views"] == 9
    assert rows["online"]["teacher_image_forwards"] == 3 * 40  # one pass per group and epoch
    # the lazy store computes only drawn entries, never more than the online teacher
    assert 0 < rows["lazy"]["teacher_image_forwards"] <= rows["online"]["teacher_image_forwards"]
    assert rows["lazy"]["store"] == {"filled": result["kd_cells"]}
    assert rows["whole"]["teacher_image_forwards"] == 9 * 40  # every view of every image
    assert rows["whole-rerun"]["teacher_image_forwards"] == 0
    assert "written:" in stdout
