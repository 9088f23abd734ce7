"""kdbench-timm installed for real: found through its entry point, listed, and trained."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("timm")

DISTRIBUTION = Path(__file__).resolve().parents[1] / "plugins" / "kdbench-timm"

# resnet10t shrinks 8x8 digits to 1x1 by its second stage and still trains; the student
# is the timm model, so the run exercises the plugin's factory and taps in a real cell.
BENCHMARK = """
[benchmark]
name = "timm-student"
seeds = [0]

[datasets.digits]

[recipe]
epochs = 1
batch_size = 128
optimizer = { name = "sgd", lr = 0.05 }
schedule = { name = "cosine" }

[teacher_recipe]
epochs = 1
batch_size = 128
optimizer = { name = "sgd", lr = 0.05 }
schedule = { name = "cosine" }

[[pairs]]
teacher = "cnn"
teacher_params = { width = 8 }
student = "timm/resnet10t"

[losses.kd]
temperature = 4.0

[measure]
latency_iters = 3
warmup = 1
throughput_batch = 16
throughput_iters = 1
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the distribution is pip-installed into, entry point metadata included."""
    root = tmp_path_factory.mktemp("kdbench_timm")
    # Build from a copy so setuptools' build/ and egg-info never land in the source tree
    # (an egg-info under src/ would register the entry point for every other test).
    source = root / "src-copy"
    shutil.copytree(
        DISTRIBUTION,
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"),
    )
    target = root / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return target


def kdbench(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["KDBENCH_STRICT_PLUGINS"] = "1"  # a plugin that fails to import fails the test
    env["HF_HUB_OFFLINE"] = "1"
    # One thread: the tiny 8x8 convolutions gain nothing from more, and a busy machine
    # oversubscribed by torch's thread pool runs them many times slower.
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "kdbench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # two kdbench start-ups, each importing torch and timm
def test_installed_plugin_is_listed_with_its_distribution(site: Path, tmp_path: Path):
    plugins = kdbench(site, "plugins", cwd=tmp_path)
    assert plugins.returncode == 0, plugins.stderr
    rows = [line.split() for line in plugins.stdout.splitlines()]
    timm_row = next(row for row in rows if row and row[0] == "timm")
    assert timm_row[1:3] == ["0.1.0", "kdbench-timm"]
    assert re.search(r"teachers: \d{3,} names", plugins.stdout)  # counted, not listed
    assert all(len(line) <= 100 for line in plugins.stdout.splitlines())

    students = kdbench(site, "list", "students", "timm/resnet18*", cwd=tmp_path)
    assert students.returncode == 0, students.stderr
    row = next(line for line in students.stdout.splitlines() if "timm/resnet18(" in line)
    assert "pretrained=False" in row and "checkpoint=None" in row
    assert "timm resnet18 (timm.create_model)" in row


@pytest.mark.slow
def test_run_trains_a_timm_student_on_digits(site: Path, tmp_path: Path):
    bench = tmp_path / "bench.toml"
    bench.write_text(BENCHMARK, encoding="utf-8")
    out = tmp_path / "out"
    result = kdbench(site, "run", str(bench), "--out", str(out), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert len(records) == 2
    assert {r["status"] for r in records} == {"ok"}
    assert {r["config"]["loss"]["label"] for r in records} == {"ce", "kd"}
    assert {r["config"]["student"]["name"] for r in records} == {"timm/resnet10t"}
    assert all(r["size"]["params"] > 0 for r in records)
