"""What per-epoch checkpoints inside a cell cost, against the cell's training time.

Run with ``python benchmarks/perf/checkpoint_cost.py [--repeats N]`` (CPU).

- a CPU cell, end to end: a lockstep group of ``benchmarks/digits.toml`` (the CNN
  student with every method of the file, seed 0) trained with ``checkpoint_every = 1``
  and with checkpoints off, interleaved ``--repeats`` rounds. The time spent inside
  the checkpoint writes is summed exactly, and set against the group's training time
  (the same group without checkpoints, median), as is the difference of the medians;
- the CIFAR-sized worst case, time only: one save of a resnet8x4 student's state with
  CRD's memory banks for 50,000 images (the largest loss state of the suite) and SGD
  momentum, the median of ``--saves`` writes.

Prints the shares and writes JSON (with the machine and its load average) under
results/perf/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from kdbench.core.config import Recipe
from kdbench.core.losses import LossContext
from kdbench.engine.cell import run_group
from kdbench.engine.cell_checkpoint import GroupCheckpoint, Outputs
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.lockstep import lockstep_groups
from kdbench.engine.measure import device_name
from kdbench.engine.runner import plan, provision_teachers
from kdbench.engine.training import make_run

ROOT = Path(__file__).resolve().parents[2]


class SaveTimer:
    """Sums the wall time of every checkpoint write while installed."""

    def __init__(self) -> None:
        self.seconds, self.saves, self._save = 0.0, 0, GroupCheckpoint.save

    def __enter__(self) -> SaveTimer:
        timer = self

        def save(checkpoint, *args, **kwargs):
            started = time.perf_counter()
            timer._save(checkpoint, *args, **kwargs)
            timer.seconds += time.perf_counter() - started
            timer.saves += 1

        GroupCheckpoint.save = save
        return self

    def __exit__(self, *exc) -> None:
        GroupCheckpoint.save = self._save


def digits_group(context: RunContext, folder: Path, epochs: int | None) -> list[CellJob]:
    """The CNN student's lockstep group of the digits benchmark, seed 0, on the CPU."""
    the_plan = plan(ROOT / "benchmarks" / "digits.toml", context)
    cells = [c for c in the_plan.cells if c.seed == 0 and c.student.name == "cnn" and c.teacher]
    teachers = provision_teachers(cells, context, folder, torch.device("cpu"))
    jobs = [
        CellJob(cell=c, device="cpu", teacher_weights=teachers[c.teacher.id]["weights"],
                teacher_info=teachers[c.teacher.id])
        for c in cells
    ]  # fmt: skip
    if epochs:
        jobs = [replace(job, cell=replace(job.cell, recipe={**job.cell.recipe, "epochs": epochs}))
                for job in jobs]  # fmt: skip
    [group] = lockstep_groups(jobs)
    return group


def cell_cost(repeats: int, epochs: int | None) -> dict:
    context = RunContext()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        group = digits_group(context, folder, epochs)
        times: dict[str, list[float]] = {"off": [], "every_epoch": []}
        saved, saves = [], []
        for round_ in range(repeats + 1):  # round 0 warms up, untimed
            for name, every in (("off", 0), ("every_epoch", 1)):
                out = Outputs(str(folder / f"{name}{round_}"), checkpoint_every=every,
                              keep_students=False)  # fmt: skip
                with SaveTimer() as timer:
                    records = run_group([replace(job, outputs=out) for job in group], context)
                assert all(r["status"] == "ok" for r in records), records[0].get("error")
                if round_:
                    times[name].append(records[0]["cost"]["group_train_seconds"])
                    if every:
                        saved.append(timer.seconds)
                        saves.append(timer.saves)
        epochs = group[0].cell.recipe["epochs"]
        size = None
        kept = Outputs(str(folder / "kept"), keep_checkpoints=True, keep_students=False)
        run_group([replace(job, outputs=kept) for job in group], context)
        for path in (folder / "kept" / "checkpoints").glob("*/state.pt"):
            size = path.stat().st_size
    off, on = statistics.median(times["off"]), statistics.median(times["every_epoch"])
    return {
        "group": [job.cell.label() for job in group],
        "epochs": epochs,
        "train_seconds_off": times["off"],
        "train_seconds_every_epoch": times["every_epoch"],
        "save_seconds_per_run": saved,
        "saves_per_run": saves,
        "checkpoint_bytes": size,
        "save_share_of_training": statistics.median(saved) / off,
        "median_difference_share": (on - off) / off,
    }


def cifar_save(saves: int) -> dict:
    """One checkpoint of a resnet8x4 student with CRD's state for CIFAR's 50,000 images."""
    context = RunContext()
    registry = context.plugins.registry
    torch.manual_seed(0)
    student = registry.get("students", "resnet8x4").obj(num_classes=100, in_channels=3)
    loss = registry.get("losses", "crd").obj()
    loss.setup(LossContext(num_classes=100, num_train=50_000,
                           student_feature_shapes={"pool": (256,)},
                           teacher_feature_shapes={"pool": (256,)},
                           train_labels=torch.randint(0, 100, (50_000,))))  # fmt: skip
    run = make_run(student, loss, Recipe().model_dump(), amp_dtype=None)
    for p in run.optimizer.param_groups[0]["params"]:
        p.grad = torch.zeros_like(p)
    run.optimizer.step()  # momentum buffers exist, as after any epoch
    stream = {"generator": torch.Generator().get_state()}
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = GroupCheckpoint(Outputs(tmp), ["cifar-cell"])
        for _ in range(saves + 1):
            started = time.perf_counter()
            checkpoint.save(0, 0.0, stream, [run.state_dict()])
            times.append(time.perf_counter() - started)
        size = checkpoint.path.stat().st_size
    return {"save_seconds": times[1:], "checkpoint_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median kept)")
    parser.add_argument("--saves", type=int, default=5, help="timed CIFAR-sized saves")
    parser.add_argument("--epochs", type=int, help="epochs per cell (default: the file's)")
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    args = parser.parse_args()
    result = {
        "device": device_name(torch.device("cpu")),
        "machine": platform.node(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg(),
    }
    cell = cell_cost(args.repeats, args.epochs)
    result["digits_cell"] = cell
    print(f"digits lockstep group ({len(cell['group'])} cells, {cell['epochs']} epochs): "
          f"training {statistics.median(cell['train_seconds_off']):.2f} s without checkpoints, "
          f"{statistics.median(cell['train_seconds_every_epoch']):.2f} s with one per epoch; "
          f"{cell['checkpoint_bytes'] / 1e3:.0f} kB each", flush=True)  # fmt: skip
    print(f"  time inside checkpoint writes: {100 * cell['save_share_of_training']:.2f} % of "
          f"the training time (difference of the medians: "
          f"{100 * cell['median_difference_share']:+.2f} %)", flush=True)  # fmt: skip
    cifar = cifar_save(args.saves)
    result["cifar_resnet8x4_crd_save"] = cifar
    print(f"CIFAR-sized checkpoint (resnet8x4 + CRD memory for 50,000 images): "
          f"{cifar['checkpoint_bytes'] / 1e6:.1f} MB in "
          f"{statistics.median(cifar['save_seconds']):.3f} s per save", flush=True)  # fmt: skip
    result["load_average_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "checkpoint_cost_cpu.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"load average before {result['load_average_before']}, after "
          f"{result['load_average_after']}; wrote {path}")  # fmt: skip


if __name__ == "__main__":
    main()
