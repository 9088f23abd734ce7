"""Shared fixtures: tiny real benchmark files and a few real distillation steps, on
scikit-learn's digits."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from kdbench import DistillationLoss, LossContext, LossInputs
from kdbench.builtin.models_small import _cnn_taps, cnn
from kdbench.engine.features import FeatureTaps

# tests/data holds fixtures, not tests: the legacy plugin examples there (with their own
# tests) run only through tests/test_legacy_plugins.py, each with its own sys.path.
collect_ignore = ["data"]

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

# A pair whose students diverge (NaN loss) under a learning rate of 1e8: failing cells.
DIVERGING_PAIR = """
[[pairs]]
teacher = "cnn"
teacher_params = { width = 8 }
student = "cnn"
student_params = { width = 4 }
recipe = { optimizer = { lr = 1e8 } }
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


# --- loss tests: inputs, contexts and an independent reference -------------------------


def rand(seed: int, *shape: int) -> torch.Tensor:
    """A seeded standard-normal tensor."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def feature_context(fs: dict, ft: dict, num_train: int = 100) -> LossContext:
    """The setup context for student features ``fs`` and teacher features ``ft``."""
    return LossContext(
        num_classes=10,
        num_train=num_train,
        student_feature_shapes={k: tuple(v.shape[1:]) for k, v in fs.items()},
        teacher_feature_shapes={k: tuple(v.shape[1:]) for k, v in ft.items()},
    )


def loss_inputs(fs, ft, *, indices, epoch=100, seed=0, teacher_logits=None) -> LossInputs:
    """One batch for a loss: random logits (seeded), targets 0..9 cycling, given features."""
    batch = len(indices)
    return LossInputs(
        student_logits=rand(seed, batch, 10),
        teacher_logits=rand(seed + 1, batch, 10) if teacher_logits is None else teacher_logits,
        targets=torch.arange(batch) % 10,
        indices=torch.as_tensor(indices),
        epoch=epoch,
        epochs=240,
        student_features=fs,
        teacher_features=ft,
    )


def np_ce(logits: np.ndarray, targets: np.ndarray) -> float:
    """Cross-entropy written out with a stable log-sum-exp, in plain NumPy."""
    total = 0.0
    for z, t in zip(logits, targets, strict=True):
        total += np.log(np.exp(z - z.max()).sum()) + z.max() - z[t]
    return total / len(targets)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """128 standardised digits images and their labels, as tensors."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x[:128], dtype=torch.float32).view(-1, 1, 8, 8)
    return (x - x.mean()) / x.std(), torch.tensor(y[:128])


def distil_steps(
    loss: DistillationLoss,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 10,
    batch: int | None = None,
    epoch: int = 30,
) -> tuple[list[float], list[bool]]:
    """Distil a width-16 CNN into a width-8 one for a few SGD steps, through real taps.

    ``batch=None`` repeats the whole of ``x`` every step; otherwise mini-batches cycle
    through it. Returns the total loss per step and, per student and loss parameter,
    whether it moved.
    """
    torch.manual_seed(0)
    student, teacher = cnn(10, 1, width=8), cnn(10, 1, width=16).eval()
    s_taps, t_taps = _cnn_taps(len(student.stages)), _cnn_taps(len(teacher.stages))
    wanted = loss.required_features([name for name in s_taps if name in t_taps])
    student_taps = FeatureTaps(student, s_taps, wanted)
    teacher_taps = FeatureTaps(teacher, t_taps, wanted)
    with student_taps, teacher_taps, torch.no_grad():
        student.eval()
        student(x[:2])
        teacher(x[:2])
        loss.setup(feature_context(student_taps.pop(), teacher_taps.pop(), num_train=len(x)))
    before = [p.detach().clone() for p in (*student.parameters(), *loss.parameters())]
    optimizer = torch.optim.SGD([*student.parameters(), *loss.parameters()], lr=0.05, momentum=0.9)
    student.train()
    batch = batch or len(x)
    totals = []
    with student_taps, teacher_taps:
        for step in range(steps):
            idx = torch.arange(step * batch, (step + 1) * batch) % len(x)
            with torch.no_grad():
                zt = teacher(x[idx])
            zs = student(x[idx])
            inputs = LossInputs(
                zs, zt, y[idx], idx, epoch, 240, student_taps.pop(), teacher_taps.pop()
            )
            total = sum(loss(inputs).values())
            assert torch.isfinite(total)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            totals.append(total.item())
    after = [*student.parameters(), *loss.parameters()]
    return totals, [not torch.equal(b, a) for b, a in zip(before, after, strict=True)]


def cell_jobs(bench: Path, folder: Path):
    """A benchmark's plugins context and its cells as CPU jobs, teachers provisioned."""
    from kdbench.engine.context import RunContext
    from kdbench.engine.job import CellJob
    from kdbench.engine.runner import plan, provision_teachers

    context = RunContext()
    the_plan = plan(bench, context)
    teachers = provision_teachers(the_plan.cells, context, folder, torch.device("cpu"))
    jobs = [
        CellJob(
            cell=cell,
            device="cpu",
            teacher_weights=teachers[cell.teacher.id]["weights"] if cell.teacher else None,
            teacher_info=teachers[cell.teacher.id] if cell.teacher else None,
        )
        for cell in the_plan.cells
    ]
    return context, jobs
