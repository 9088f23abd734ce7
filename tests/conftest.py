"""Shared fixtures: tiny real benchmark files on scikit-learn's digits."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

TINY = """
[benchmark]
name = "tiny"
seeds = [0, 1]

[datasets.digits]

[recipe]
epochs = 2
batch_size = 128
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "cosine" }}

[teacher_recipe]
epochs = 3
batch_size = 128
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "cosine" }}

[[pairs]]
teacher = "cnn"
teacher_params = {{ width = 8 }}
student = "mlp"
student_params = {{ hidden = 16 }}
{extra_pairs}
[losses.kd]
temperature = 4.0

[measure]
latency_iters = 5
warmup = 1
throughput_batch = 16
throughput_iters = 1
"""


def write_benchmark(folder: Path, extra_pairs: str = "", text: str | None = None) -> Path:
    """A small real benchmark file (digits, two seeds, ce + kd) in ``folder``."""
    path = folder / "bench.toml"
    body = text if text is not None else TINY.format(extra_pairs=textwrap.dedent(extra_pairs))
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def tiny_benchmark(tmp_path: Path) -> Path:
    return write_benchmark(tmp_path)
