"""Fast and reference paths reach the same accuracy: KD on Fashion-MNIST, 3 seeds, CPU.

``python benchmarks/perf/accuracy_parity.py [--epochs 4] [--train-subset 10000]``

The same teacher (trained once by kdbench), the same student architecture, KD with
T = 4 and alpha = 0.9, SGD with a cosine schedule and random crop (padding 2):

- reference: the RepDistiller-style loop (DataLoader workers, per-image torchvision
  transforms, fp32, teacher forward every step);
- kdbench: the same cells run by kdbench (device-side augmentation, lockstep, logit
  cache where it pays).

Prints top-1 mean ± std over the seeds for both; differences within seed noise are
the expected outcome (the two draw different random augmentations).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from kd_step import reference_loader, reference_step

from kdbench.engine.cell import run_cell
from kdbench.engine.context import RunContext
from kdbench.engine.evaluate import evaluate
from kdbench.engine.job import CellJob
from kdbench.engine.runner import plan, provision_teachers
from kdbench.engine.teachers import load_teacher

BENCH = """
[benchmark]
name = "parity"
seeds = [0, 1, 2]
[datasets.fashion_mnist]
train_subset = {subset}
[teacher_recipe]
epochs = 6
batch_size = 128
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "cosine" }}
[recipe]
epochs = {epochs}
batch_size = 64
optimizer = {{ name = "sgd", lr = 0.05, momentum = 0.9, weight_decay = 5e-4 }}
schedule = {{ name = "cosine" }}
augment = {{ crop_padding = 2 }}
[[pairs]]
teacher = "cnn"
teacher_params = {{ width = 32 }}
student = "cnn"
student_params = {{ width = 8 }}
[losses.kd]
[measure]
latency = false
flops = false
"""


def reference_accuracy(job: CellJob, context: RunContext, epochs: int) -> float:
    cell = job.cell
    data, _ = context.dataset(cell.dataset)
    device = torch.device("cpu")
    teacher = load_teacher(cell.teacher, context, data, Path(job.teacher_weights), device)
    torch.manual_seed(cell.seed)
    student = context.build_model("students", cell.student, data)
    loader = reference_loader(data, batch=64, padding=2, flip=False, workers=2,
                              generator=torch.Generator().manual_seed(cell.seed))  # fmt: skip
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    for _ in range(epochs):
        student.train()
        for x, y in loader:
            reference_step(student, teacher, optimizer, x, y)
        schedule.step()
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    return evaluate(student, data.test, mean=mean, std=std, device=device)["top1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-subset", type=int, default=10_000)
    args = parser.parse_args()
    context = RunContext()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "parity.toml"
        path.write_text(BENCH.format(epochs=args.epochs, subset=args.train_subset))
        cells = [c for c in plan(path, context).cells if c.loss.name == "kd"]
        teachers = provision_teachers(cells, context, Path(tmp), torch.device("cpu"))
        jobs = [CellJob(cell=c, device="cpu", teacher_weights=teachers[c.teacher.id]["weights"])
                for c in cells]  # fmt: skip
        fast = [run_cell(job, context)["metrics"]["top1"] for job in jobs]
        slow = [reference_accuracy(job, context, args.epochs) for job in jobs]
    print(f"KD on Fashion-MNIST ({args.train_subset} train images, {args.epochs} epochs), "
          f"cnn(width 32) -> cnn(width 8), seeds 0-2, top-1 %:")  # fmt: skip
    for name, values in (("reference loop", slow), ("kdbench", fast)):
        print(f"  {name:<15} {statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}  "
              f"({', '.join(f'{v:.2f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    main()
