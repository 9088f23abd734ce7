"""What tuning costs in kdbench against running the same trials as independent cells.

``python benchmarks/perf/tuning_cost.py [--trials 4] [--trial-epochs 1] [--train-subset 2000]``

The search: Fashion-MNIST, cnn(width 64) -> cnn(width 16), the logit losses kd, dkd
(warmup 1), dist and kd_ls, each with ``--trials`` trials over its temperature and the
learning rate (random sampler, no pruner, all trials in one round: the trial set is
fixed by the seed), on 10 % of the training subset held out for validation. ``kdbench
run`` adds the ``ce`` baseline, which is tuned too (over the learning rate). In one
process, in this order:

- ``kdbench``: the benchmark planned and run as ``kdbench run`` runs it (the local
  executor, lockstep on, ``logit_cache = "auto"``): teacher training, the trials, then
  one final cell per method. The trials' phase is timed on its own (the tuning loop:
  Optuna's asking and telling and the executor's trial cells), and so are the finals;
- ``independent``: the very trial cells the run made (same ids, same values), one after
  another with :func:`kdbench.engine.cell.run_cell`, ``logit_cache = "off"``: a teacher
  forward at every step, as a RepDistiller-style script trains each setting it tries.

Teacher passes are counted in images through the teacher's forward, by a forward hook
on every teacher a cell loads (the one-off measurement of its cost is not counted). The
script checks that every independent trial has its kdbench twin's ``val_top1`` exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from matrix_cost import KD_LOSSES, machine, write_results

import kdbench.engine.cell as engine_cell
import kdbench.engine.tuning as engine_tuning
from kdbench.engine.cell import run_cell
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.matrix import Cell
from kdbench.engine.runner import plan, run_benchmark
from kdbench.engine.teachers import teacher_paths

LOSSES = ("kd", "dkd", "dist", "kd_ls")

BENCH = """
[benchmark]
name = "tuning-cost"
seeds = [0]

[datasets.fashion_mnist]
root = "{root}"
train_subset = {subset}
test_subset = {test_subset}

[teacher_recipe]
epochs = 2
batch_size = 128
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "cosine" }}

[recipe]
epochs = {epochs}
batch_size = 128
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "cosine" }}

[[pairs]]
teacher = "cnn"
teacher_params = {{ width = 64 }}
student = "cnn"
student_params = {{ width = 16 }}

[tune]
validation = 0.1
trials = {trials}
trial_epochs = {epochs}
sampler = "random"
pruner = "none"
seed = 0
batch = {trials}

[tune.search]
"recipe.optimizer.lr" = {{ log_uniform = [0.01, 0.2] }}
"""

# Each logit loss searches its temperature too (after KD_LOSSES, which defines the losses).
TEMPERATURE = "[losses.{}.search]\ntemperature = {{ choice = [1.0, 2.0, 4.0, 8.0] }}\n"


class Meter:
    """What the run's phases cost: wall seconds and teacher image forwards per phase."""

    def __init__(self) -> None:
        self.forwards: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self.trial_cells: list[Cell] = []

    def count(self, phase: str) -> Any:
        def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            self.forwards[phase] += inputs[0].shape[0]

        return hook

    def install(self) -> None:
        """Patch this process's engine (the library's files are untouched): every teacher
        a cell loads counts its forwards under the cell's phase; the tuning loop and each
        executor call (its cells' phase: trial or final) are timed."""
        frozen_teacher = engine_cell.frozen_teacher
        tune_methods, run_tuning = engine_tuning.tune_methods, engine_tuning.run_tuning

        def counted_teacher(job: CellJob, *args: Any) -> Any:
            teacher, *rest = frozen_teacher(job, *args)
            teacher.register_forward_pre_hook(self.count(job.cell.phase or "untuned"))
            return (teacher, *rest)

        def timed_tuning(*args: Any) -> None:
            started = time.perf_counter()
            tune_methods(*args)
            self.seconds["tuning"] += time.perf_counter() - started

        def timed_run_tuning(the_plan, context, store, execute, out_dir, say):  # noqa: ANN001
            def timed_execute(cells: list[Cell], pruning: dict) -> None:
                started = time.perf_counter()
                execute(cells, pruning)
                for phase in {cell.phase for cell in cells}:  # one phase per call
                    self.seconds[f"{phase} cells"] += time.perf_counter() - started
                self.trial_cells += [cell for cell in cells if cell.phase == "trial"]

            return run_tuning(the_plan, context, store, timed_execute, out_dir, say)

        engine_cell.frozen_teacher = counted_teacher
        engine_tuning.tune_methods = timed_tuning
        # run_benchmark imports run_tuning when it runs, so it gets this one
        engine_tuning.run_tuning = timed_run_tuning


def kdbench_run(bench: Path, out: Path, context: RunContext) -> float:
    """``kdbench run``'s engine in this process: its wall time (teacher training included)."""
    the_plan = plan(bench, context, validate=True)
    started = time.perf_counter()
    result = run_benchmark(the_plan, context, out_dir=out, device="cpu", quiet=True,
                           threads=torch.get_num_threads())  # fmt: skip
    seconds = time.perf_counter() - started
    if result.failed:
        raise SystemExit(f"kdbench run: failed cells {result.failed}")
    return seconds


def independent(cells: list[Cell], out: Path, context: RunContext) -> tuple[float, list[dict]]:
    """The trial cells one by one, the teacher run at every step (no logit cache)."""
    jobs = [
        CellJob(cell=replace(c, recipe={**c.recipe, "logit_cache": "off"}), device="cpu",
                teacher_weights=str(teacher_paths(out, c.teacher)[0]) if c.teacher else None)
        for c in cells
    ]  # fmt: skip
    started = time.perf_counter()
    records = [run_cell(job, context) for job in jobs]
    return time.perf_counter() - started, records


def trial_key(record: dict) -> tuple[str, int]:
    return record["config"]["tune"]["study"], record["config"]["tune"]["trial"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="per method (one round)")
    parser.add_argument("--trial-epochs", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=2000)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--data-root", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    parser.add_argument("--tag", default="", help="suffix of the written files' names")
    args = parser.parse_args()
    load_before = os.getloadavg()
    context, meter = RunContext(), Meter()
    meter.install()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench, out = folder / "bench.toml", folder / "run"
        text = BENCH.format(root=args.data_root, subset=args.train_subset, trials=args.trials,
                            test_subset=args.test_subset, epochs=args.trial_epochs)  # fmt: skip
        bench.write_text(text + KD_LOSSES + "".join(TEMPERATURE.format(x) for x in LOSSES))
        run_seconds = kdbench_run(bench, out, context)
        kdbench_forwards = dict(meter.forwards)
        records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
        trials = [r for r in records if r["config"]["phase"] == "trial"]
        assert sorted(r["cell_id"] for r in trials) == sorted(c.id for c in meter.trial_cells)
        meter.forwards.clear()
        alone_seconds, alone = independent(meter.trial_cells, out, context)
    summary = summarize(args, run_seconds, kdbench_forwards, meter, trials, records)
    summary["rows"]["independent"] = {
        "seconds": alone_seconds, "teacher_image_forwards": meter.forwards["trial"],
        "train_seconds": sum(r["cost"]["train_seconds"] for r in alone),
    }  # fmt: skip
    summary.update(compare(trials, alone))
    rows = summary["rows"]
    summary["independent_over_kdbench_seconds"] = alone_seconds / rows["kdbench"]["seconds"]
    summary["independent_over_kdbench_teacher_forwards"] = (
        rows["independent"]["teacher_image_forwards"] / rows["kdbench"]["teacher_image_forwards"]
    )
    summary.update(machine(torch.get_num_threads(), load_before))
    write_results(args.out / f"tuning_cost_cpu{args.tag}", summary, report(summary))


def summarize(
    args: argparse.Namespace,
    run_seconds: float,
    forwards: dict[str, int],
    meter: Meter,
    trials: list[dict],
    records: list[dict],
) -> dict[str, Any]:
    """The kdbench run's phases: the trials' (what is compared) and the rest around them."""
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    kd_trials = [r for r in trials if r["config"]["loss"]["label"] != "ce"]
    finals = [r for r in records if r["config"]["phase"] == "final"]
    store = Counter(r["protocol"].get("logit_store") or "online" for r in kd_trials)
    groups = Counter(r["protocol"]["lockstep_group"] for r in trials)
    seconds = meter.seconds
    return {
        "dataset": "fashion_mnist", "pair": "cnn(width 64) -> cnn(width 16)",
        "train_images": args.train_subset, "test_images": args.test_subset,
        "trial_train_images": trials[0]["dataset"]["train"],
        "validation_images": trials[0]["dataset"]["validation"],
        "losses": list(LOSSES), "trials_per_method": args.trials,
        "trial_epochs": args.trial_epochs, "trials": len(trials), "kd_trials": len(kd_trials),
        # (group size, how many groups of that size) of the trial cells
        "lockstep_groups": sorted((size, n // size) for size, n in groups.items()),
        "rows": {
            "kdbench": {
                "seconds": seconds["tuning"], "trial_cells_seconds": seconds["trial cells"],
                "teacher_image_forwards": forwards.get("trial", 0),
                "train_seconds": sum(r["cost"]["train_seconds"] for r in trials),
                "store": dict(store),
            },
            "kdbench_whole_run": {
                "seconds": run_seconds, "final_cells_seconds": seconds["final cells"],
                "final_cells": len(finals),
                "final_teacher_image_forwards": forwards.get("final", 0),
                # the teacher's training, dataset loads, Optuna's set-up, records
                "other_seconds": run_seconds - seconds["tuning"] - seconds["final cells"],
            },
        },
    }  # fmt: skip


def compare(trials: list[dict], alone: list[dict]) -> dict[str, Any]:
    """Each independent trial against its kdbench twin (same study and trial number)."""
    assert all(r["status"] == "ok" for r in alone), [r.get("error") for r in alone]
    ours = {trial_key(r): r["metrics"]["val_top1"] for r in trials}
    theirs = {trial_key(r): r["metrics"]["val_top1"] for r in alone}
    assert ours.keys() == theirs.keys()
    differ = sorted(k for k in ours if ours[k] != theirs[k])
    assert not differ, f"val_top1 differs: {[(k, ours[k], theirs[k]) for k in differ]}"
    return {"val_top1_equal": len(ours), "val_top1_differ": len(differ)}


def report(s: dict) -> str:
    k, whole, ind = s["rows"]["kdbench"], s["rows"]["kdbench_whole_run"], s["rows"]["independent"]
    groups = ", ".join(f"{n} of {size} cells" for size, n in s["lockstep_groups"])
    store = ", ".join(f"{use} {n}" for use, n in sorted(k["store"].items()))
    lines = [
        f"{s['dataset']} ({s['train_images']} train: {s['trial_train_images']} trial-train + "
        f"{s['validation_images']} validation; {s['test_images']} test), {s['pair']}, "
        f"{len(s['losses'])} logit losses + ce x {s['trials_per_method']} trials = "
        f"{s['trials']} trials x {s['trial_epochs']} epoch(s), {s['device']}, "
        f"{s['threads']} thread(s)",
        f"load average at start {s['load_average_before']}",
        f"{'variant':<36} {'seconds':>8} {'trained s':>10} {'teacher image fwd':>18}",
        f"{'kdbench tuning (trials + Optuna)':<36} {k['seconds']:>8.1f} "
        f"{k['train_seconds']:>10.1f} {k['teacher_image_forwards']:>18,}",
        f"{'independent trial cells, no cache':<36} {ind['seconds']:>8.1f} "
        f"{ind['train_seconds']:>10.1f} {ind['teacher_image_forwards']:>18,}",
        f"independent / kdbench: {s['independent_over_kdbench_seconds']:.2f}x wall seconds, "
        f"{s['independent_over_kdbench_teacher_forwards']:.1f}x teacher image forwards",
        f"kdbench trials: lockstep groups {groups}; KD trials' teacher logits: {store}; "
        f"executor time of the trial cells {k['trial_cells_seconds']:.1f} s",
        f"kdbench whole run {whole['seconds']:.1f} s = tuning {k['seconds']:.1f} + "
        f"{whole['final_cells']} final cells {whole['final_cells_seconds']:.1f} "
        f"({whole['final_teacher_image_forwards']:,} teacher image forwards) + other "
        f"{whole['other_seconds']:.1f} (teacher training, loads, records)",
        f"every independent trial has its kdbench twin's val_top1 exactly "
        f"({s['val_top1_equal']} trials compared)",
        f"load average at end {s['load_average_after']}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
