"""What a KD matrix costs over its students' CE-only training, three ways, in one run.

``python benchmarks/perf/matrix_cost.py [--epochs 2] [--train-subset 10000]``

The matrix: Fashion-MNIST, one CNN teacher (width 64, ~260k parameters), a 4x narrower
student, the logit losses kd, dkd, dist and kd_ls, three seeds (12 cells). Timed:

- ce-only: the same 12 students trained with plain cross-entropy (the floor);
- plain: the 12 KD cells one by one, teacher forward at every step (how scripts do it);
- kdbench: the same cells as kdbench runs them: cells sharing a seed in lockstep (one
  teacher forward per batch for all four losses) and the exact teacher-logit cache.

Teacher training is done first and not timed (every variant shares it). No
augmentation here, so the logit cache holds one view per image; with crop + flip it
pays once seeds x epochs exceed the number of views. The script also checks that
every variant's records agree with the plain ones (same metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from kdbench.engine.cell import run_cell, run_group
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.lockstep import lockstep_groups
from kdbench.engine.matrix import LossSpec
from kdbench.engine.measure import device_name
from kdbench.engine.runner import plan, provision_teachers

# The end of BENCH (the losses, the measurements), shared with logit_store.py; no format fields.
KD_LOSSES = """
[losses.kd]
[losses.dkd]
warmup = 1
[losses.dist]
[losses.kd_ls]

[measure]
latency = false
flops = false
"""

BENCH = """
[benchmark]
name = "matrix-cost"
seeds = [0, 1, 2]

[datasets.fashion_mnist]
train_subset = {subset}

[teacher_recipe]
epochs = 3
batch_size = 128
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "cosine" }}

[recipe]
epochs = {epochs}
batch_size = 128
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "cosine" }}
logit_cache = "{cache}"

[[pairs]]
teacher = "cnn"
teacher_params = {{ width = 64 }}
student = "cnn"
student_params = {{ width = 16 }}
"""


def jobs_for(folder: Path, context: RunContext, *, epochs: int, subset: int, cache: str):
    path = folder / f"bench-{cache}.toml"
    path.write_text((BENCH + KD_LOSSES).format(epochs=epochs, subset=subset, cache=cache))
    the_plan = plan(path, context)
    teachers = provision_teachers(the_plan.cells, context, folder, torch.device("cpu"))
    return [
        CellJob(cell=cell, device="cpu", teacher_weights=teachers[cell.teacher.id]["weights"])
        for cell in the_plan.cells
        if cell.teacher is not None
    ]


def ce_twins(jobs: list[CellJob]) -> list[CellJob]:
    """The jobs' students trained alone with cross-entropy (no teacher): the floor."""
    return [
        replace(job, cell=replace(job.cell, loss=LossSpec("ce", "ce", {}), teacher=None))
        for job in jobs
    ]


def machine(threads: int, load_before: tuple[float, ...]) -> dict:
    """Where and under what load a measurement ran: every perf summary carries it."""
    return {"machine": platform.node(), "device": device_name(torch.device("cpu")),
            "torch": torch.__version__, "threads": threads, "load_average_before": load_before,
            "load_average_after": os.getloadavg()}  # fmt: skip


def write_results(stem: Path, summary: dict, text: str) -> None:
    """``<stem>.json`` (the numbers) and ``<stem>.txt`` (the printed table), both shown."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    stem.with_suffix(".txt").write_text(text)
    print(text, end="")
    print(f"written: {stem}.json, .txt")


def timed(fn) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    records = fn()
    return time.perf_counter() - started, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-subset", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    args = parser.parse_args()
    context = RunContext()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kw = dict(epochs=args.epochs, subset=args.train_subset)
        plain_jobs = jobs_for(folder, context, cache="off", **kw)
        fast_jobs = jobs_for(folder, context, cache="on", **kw)
        ce_jobs = ce_twins(plain_jobs)
        results = {
            "ce-only": timed(lambda: [run_cell(job, context) for job in ce_jobs]),
            "plain": timed(lambda: [run_cell(job, context) for job in plain_jobs]),
            "kdbench": timed(
                lambda: [r for g in lockstep_groups(fast_jobs) for r in run_group(g, context)]
            ),
        }
    plain = {
        r["config"]["loss"]["label"] + str(r["config"]["seed"]): r for r in results["plain"][1]
    }
    for r in results["kdbench"][1]:
        twin = plain[r["config"]["loss"]["label"] + str(r["config"]["seed"])]
        assert r["status"] == twin["status"] == "ok", (r.get("error"), twin.get("error"))
        assert r["metrics"] == twin["metrics"], "lockstep + cache changed a result"
    floor = results["ce-only"][0]
    print(f"Fashion-MNIST ({args.train_subset} train images), cnn(width 64) -> cnn(width 16), "
          f"{len(plain_jobs)} KD cells x {args.epochs} epochs, {device_name(torch.device('cpu'))}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'variant':<10} {'seconds':>9} {'x ce-only':>10}")
    rows = []
    for name, (seconds, _) in results.items():
        print(f"{name:<10} {seconds:>9.1f} {seconds / floor:>10.2f}")
        rows.append({"variant": name, "seconds": seconds, "ratio_to_ce_only": seconds / floor})
    print("kdbench records equal the plain ones (metrics compared exactly).")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "matrix_cost_cpu.json"
    summary = {"machine": platform.node(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "epochs": args.epochs,
               "train_subset": args.train_subset, "rows": rows}  # fmt: skip
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
