"""What the teacher costs a KD matrix, four ways, in one run: the teacher-logit store.

``python benchmarks/perf/logit_store.py [--pair fashion|cifar] [--epochs 2] [--train-subset N]``

The matrix: one teacher, the logit losses kd, dkd, dist and kd_ls, three seeds (12 KD
cells). ``--pair fashion``: Fashion-MNIST, cnn(width 64) -> cnn(width 16) (the Debian
dataset package's files). ``--pair cifar``: resnet32x4 -> resnet8x4 on CIFAR-100-shaped
files (torchvision's on-disk layout, random pixels, written to a temporary folder: only
time is measured). Timed, in this order:

- ``ce-only``: the 12 students trained with cross-entropy, one by one (the floor);
- ``plain``: the 12 KD cells one by one, a teacher forward at every step, as
  RepDistiller-style scripts train (the same kdbench training step, logit cache off);
- ``kdbench``: ``kdbench run`` of the matrix in a fresh process (start-up included):
  cells of a seed in lockstep, the teacher's logits computed once into the results
  folder's store (``logit_cache = "on"``), every other cell reading them;
- ``rerun``: another ``kdbench run`` process, seeds 3-5, in a new results folder
  holding a copy of the first one's ``teachers/`` and ``logits/``: the store is hit
  across processes and no teacher runs at all.

``kdbench run`` always adds the ``ce`` baseline (3 cells); they are charged at the
``ce-only`` rate and the rest of the process's wall time is split over the 12 KD cells,
so start-up, the store's build and measuring count against kdbench. The teacher's
training is done first and not timed. Teacher passes are counted in image forwards:
``plain`` runs ``epochs x images`` per cell, lockstep groups share one pass per seed, the
store costs ``views x images`` once (``--crop-padding`` and ``--flip`` set the views;
with neither, one view per image). The script checks that kdbench's records have the
metrics of the plain ones and that every rerun cell read the store.

``--lazy``: more views than the run's epochs (e.g. ``--crop-padding 2 --flip``: 50 views
against 12 KD cells x 2 epochs), where ``auto`` fills the store lazily. Five ``kdbench
run`` processes of the matrix, each in a fresh results folder holding the trained
teacher: ``online`` (``logit_cache = "off"``), ``lazy`` (``"auto"``: each (image, view)
computed when a batch first draws it), ``lazy-rerun`` (seeds 3-5 in a folder holding a
copy of ``lazy``'s ``logits/``), ``whole`` (``"on"``: every view's logits first) and
``whole-rerun``. Teacher image forwards come from the records
(lazy: the entries each lockstep group computed). The script checks that the first
runs' records are equal and that the reruns' are.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from matrix_cost import KD_LOSSES, ce_twins, machine, write_results

from kdbench.engine.batches import Augment
from kdbench.engine.cell import run_cell
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.runner import plan, provision_teachers

LOSSES = ("kd", "dkd", "dist", "kd_ls")
SEEDS, RERUN_SEEDS = [0, 1, 2], [3, 4, 5]
PAIRS = {
    "fashion": dict(dataset="fashion_mnist", teacher="cnn", teacher_params="{ width = 64 }",
                    student="cnn", student_params="{ width = 16 }", batch=128),
    "cifar": dict(dataset="cifar100", teacher="resnet32x4", teacher_params="{}",
                  student="resnet8x4", student_params="{}", batch=64),
}  # fmt: skip

BENCH = """
[benchmark]
name = "logit-store-cost"
seeds = {seeds}

[datasets.{dataset}]
train_subset = {subset}
{dataset_extra}
[teacher_recipe]
epochs = 1
batch_size = {batch}
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "cosine" }}

[recipe]
epochs = {epochs}
batch_size = {batch}
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "cosine" }}
augment = {{ crop_padding = {padding}, flip = {flip} }}
logit_cache = "on"

[[pairs]]
teacher = "{teacher}"
teacher_params = {teacher_params}
student = "{student}"
student_params = {student_params}
"""


def write_cifar100(root: Path, train: int, test: int) -> None:
    """CIFAR-100 in torchvision's layout with random pixels and balanced labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def part(n: int) -> dict:
        labels = [i % 100 for i in range(n)]
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        return {"data": pixels, "fine_labels": labels, "coarse_labels": [i // 5 for i in labels]}

    (folder / "train").write_bytes(pickle.dumps(part(train), protocol=2))
    (folder / "test").write_bytes(pickle.dumps(part(test), protocol=2))
    names = [f"class_{i:02d}" for i in range(100)]
    meta = {"fine_label_names": names, "coarse_label_names": names[:20]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))


def bench_text(args: argparse.Namespace, data_root: Path) -> str:
    pair = PAIRS[args.pair]
    extra = f'root = "{data_root}"\ntest_subset = {args.test_subset}\n'
    return (BENCH + KD_LOSSES).format(
        seeds=SEEDS, subset=args.train_subset, epochs=args.epochs, padding=args.crop_padding,
        flip=str(args.flip).lower(), dataset_extra=extra, **pair,
    )  # fmt: skip


def kdbench_run(bench: Path, out: Path, threads: int, *extra: str) -> tuple[float, list[dict]]:
    """``kdbench run`` in a new process: its wall time (start-up included) and records."""
    command = [sys.executable, "-m", "kdbench", "run", str(bench), "--out", str(out),
               "--device", "cpu", "--threads", str(threads), "-q", *extra]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"kdbench run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    return seconds, records


def timed(jobs: list[CellJob], context: RunContext) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    records = [run_cell(job, context) for job in jobs]
    return time.perf_counter() - started, records


def key(record: dict) -> tuple[str, int]:
    return record["config"]["loss"]["label"], record["config"]["seed"]


def store_use(records: list[dict]) -> dict[str, int]:
    """How the KD cells got the teacher's logits: built, read, or online (no store)."""
    uses: dict[str, int] = {}
    for r in records:
        if r["config"]["loss"]["label"] != "ce":
            use = r["protocol"].get("logit_store") or "online"
            uses[use] = uses.get(use, 0) + 1
    return uses


def kd_cells(records: list[dict]) -> list[dict]:
    return [r for r in records if r["config"]["loss"]["label"] != "ce"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), default="fashion")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-subset", type=int, default=10_000)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--crop-padding", type=int, default=0)
    parser.add_argument("--flip", action="store_true")
    parser.add_argument("--data-root", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="Fashion-MNIST's folder (--pair fashion)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    parser.add_argument("--tag", default="", help="suffix of the written files' names")
    parser.add_argument("--lazy", action="store_true",
                        help="the lazily filled store against the online teacher")  # fmt: skip
    args = parser.parse_args()
    if args.lazy:
        return lazy_main(args)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    context = RunContext()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data_root = args.data_root
        if args.pair == "cifar":
            data_root = folder / "cifar"
            write_cifar100(data_root, args.train_subset, args.test_subset)
        bench = folder / "bench.toml"
        bench.write_text(bench_text(args, data_root))
        first, second = folder / "run", folder / "rerun"
        cells = [c for c in plan(bench, context).cells if c.teacher is not None]
        teachers = provision_teachers(cells, context, first, torch.device("cpu"))
        plain_jobs = [
            CellJob(cell=replace(c, recipe={**c.recipe, "logit_cache": "off"}), device="cpu",
                    teacher_weights=teachers[c.teacher.id]["weights"])
            for c in cells
        ]  # fmt: skip
        ce_jobs = ce_twins(plain_jobs)
        results, loads = {}, {}
        results["ce-only"], loads["ce-only"] = timed(ce_jobs, context), os.getloadavg()
        results["plain"], loads["plain"] = timed(plain_jobs, context), os.getloadavg()
        results["kdbench"] = kdbench_run(bench, first, threads)
        loads["kdbench"] = os.getloadavg()
        second.mkdir()
        for shared in ("teachers", "logits"):
            shutil.copytree(first / shared, second / shared)
        results["rerun"] = kdbench_run(
            bench, second, threads, "--set", f"benchmark.seeds={RERUN_SEEDS}"
        )
        loads["rerun"] = os.getloadavg()
    summary = summarize(args, results, len(cells))
    for name, load in loads.items():  # the variants run one after another: each one's load
        summary["rows"][name]["load_average_after"] = load
    summary.update(machine(threads, load_before))
    write_results(args.out / f"logit_store_{args.pair}_cpu{args.tag}", summary, report(summary))


LAZY_VARIANTS = {  # name: (logit_cache, the run whose logits/ it starts with, seeds)
    "online": ("off", None, SEEDS),
    "lazy": ("auto", None, SEEDS),
    "lazy-rerun": ("auto", "lazy", RERUN_SEEDS),
    "whole": ("on", None, SEEDS),
    "whole-rerun": ("on", "whole", RERUN_SEEDS),
}


def lazy_main(args: argparse.Namespace) -> None:
    """``--lazy``: the five runs of the module's note, one after another, and a report."""
    threads, load_before = torch.get_num_threads(), os.getloadavg()
    context = RunContext()
    views = Augment(crop_padding=args.crop_padding, flip=args.flip).num_views
    rows: dict[str, dict] = {}
    records: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench = folder / "bench.toml"
        bench.write_text(bench_text(args, args.data_root))
        cells = [c for c in plan(bench, context).cells if c.teacher is not None]
        provision_teachers(cells, context, folder / "trained", torch.device("cpu"))
        for name, (setting, start, seeds) in LAZY_VARIANTS.items():
            out = folder / name
            shutil.copytree(folder / "trained" / "teachers", out / "teachers")
            if start:
                shutil.copytree(folder / start / "logits", out / "logits")
            seconds, records[name] = kdbench_run(
                bench, out, threads, "--set", f'recipe.logit_cache="{setting}"',
                "--set", f"benchmark.seeds={seeds}",
            )  # fmt: skip
            kd = kd_cells(records[name])
            assert len(kd) == len(cells) and all(r["status"] == "ok" for r in kd), name
            rows[name] = {
                "process_seconds": seconds,
                "train_seconds_per_kd_cell": sum(r["cost"]["train_seconds"] for r in kd) / len(kd),
                "teacher_image_forwards": lazy_forwards(kd, args.epochs, args.train_subset, views),
                "store": store_use(records[name]), "load_average_after": os.getloadavg(),
            }  # fmt: skip
            print(name, json.dumps(rows[name]), flush=True)  # as it goes: the runs are long
    for first, second in (("online", "whole"), ("online", "lazy"), ("whole-rerun", "lazy-rerun")):
        a = {key(r): r["metrics"] for r in kd_cells(records[first])}
        assert a == {key(r): r["metrics"] for r in kd_cells(records[second])}, (first, second)
    online = rows["online"]
    for row in rows.values():
        for what in ("process_seconds", "teacher_image_forwards"):
            row[f"{what}_over_online"] = row[what] / online[what]
    summary = {
        "dataset": PAIRS[args.pair]["dataset"], "train_images": args.train_subset,
        "pair": f"{PAIRS[args.pair]['teacher']} -> {PAIRS[args.pair]['student']}",
        "test_images": args.test_subset, "epochs": args.epochs, "views": views,
        "kd_cells": len(cells), "rows": rows, "records_equal": True,
        **machine(threads, load_before),
    }  # fmt: skip
    lines = [
        f"{summary['dataset']} ({args.train_subset} train / {args.test_subset} test images), "
        f"{summary['pair']}, {len(cells)} KD cells x {args.epochs} epochs (3 lockstep groups), "
        f"{views} views per image, {summary['device']}, {threads} threads",
        f"{'variant':<12} {'process s':>10} {'/ online':>9} {'trained s / cell':>17} "
        f"{'teacher fwd':>12} {'/ online':>9}  store",
    ]
    for name, row in rows.items():
        store = ", ".join(f"{k} {v}" for k, v in sorted(row["store"].items()))
        lines.append(f"{name:<12} {row['process_seconds']:>10.1f} "
                     f"{row['process_seconds_over_online']:>9.2f} "
                     f"{row['train_seconds_per_kd_cell']:>17.2f} "
                     f"{row['teacher_image_forwards']:>12,} "
                     f"{row['teacher_image_forwards_over_online']:>9.2f}  {store}")  # fmt: skip
    lines += [
        "records: online = whole = lazy (metrics compared exactly), whole-rerun = lazy-rerun",
        f"load average before {load_before}, after {summary['load_average_after']}",
    ]
    write_results(args.out / f"logit_store_lazy_{args.pair}_cpu{args.tag}", summary,
                  "\n".join(lines) + "\n")  # fmt: skip


def lazy_forwards(kd: list[dict], epochs: int, images: int, views: int) -> int:
    """Teacher image forwards of a run's KD cells: each lockstep group (a seed) runs the
    teacher on every image each epoch online, computes the entries it filled lazily, and
    one group builds the whole array (padding rows of a small lazy fill not counted)."""
    groups = {r["config"]["seed"]: r["protocol"] for r in kd}.values()
    total = 0
    for protocol in groups:
        use = protocol.get("logit_store")
        if use == "filled":
            total += protocol["logit_store_entries"]["computed"]
        elif use == "built":
            total += views * images
        elif not protocol["logit_cache"]:
            total += epochs * images
    return total


def summarize(args: argparse.Namespace, results: dict, cells: int) -> dict:
    """Per-cell wall time and teacher image forwards of each variant, and the checks."""
    images = args.train_subset
    views = Augment(crop_padding=args.crop_padding, flip=args.flip).num_views
    plain = {key(r): r for r in results["plain"][1]}
    for r in results["plain"][1] + results["ce-only"][1]:
        assert r["status"] == "ok", r.get("error")
    made = kd_cells(results["kdbench"][1])
    assert len(made) == cells and all(r["status"] == "ok" for r in made)
    for r in made:
        assert r["metrics"] == plain[key(r)]["metrics"], f"{key(r)}: the store changed a result"
    reran = kd_cells(results["rerun"][1])
    assert store_use(reran) == {"read": cells}, store_use(reran)
    ce_cell = results["ce-only"][0] / cells
    rows = {}
    for name, (seconds, records) in results.items():
        if name in ("kdbench", "rerun"):
            uses = store_use(records)
            baseline = len(records) - len(kd_cells(records))
            per_cell = (seconds - baseline * ce_cell) / cells
            forwards = views * images if uses.get("built") else 0  # one build serves all
            forwards += (uses.get("online", 0) // len(LOSSES)) * args.epochs * images
        else:
            uses, baseline, per_cell = {}, 0, seconds / cells
            forwards = cells * args.epochs * images if name == "plain" else 0
        trained = [r["cost"]["train_seconds"] for r in kd_cells(records)] or [
            r["cost"]["train_seconds"] for r in records
        ]
        rows[name] = {
            "process_seconds": seconds, "seconds_per_kd_cell": per_cell,
            # training and evaluation alone, from the records (a lockstep cell's share)
            "train_seconds_per_kd_cell": sum(trained) / len(trained),
            "teacher_image_forwards": forwards, "teacher_forwards_per_cell": forwards / cells,
            "ce_cells_charged": baseline, "store": uses,
        }  # fmt: skip
    kd = rows["kdbench"]["seconds_per_kd_cell"]
    return {
        "pair": f"{PAIRS[args.pair]['teacher']} -> {PAIRS[args.pair]['student']}",
        "dataset": PAIRS[args.pair]["dataset"], "train_images": images,
        "test_images": args.test_subset, "epochs": args.epochs, "views": views,
        "losses": list(LOSSES), "seeds": SEEDS, "rerun_seeds": RERUN_SEEDS, "kd_cells": cells,
        "rows": rows,
        "plain_over_kdbench": rows["plain"]["seconds_per_kd_cell"] / kd,
        "kdbench_over_ce_only": kd / rows["ce-only"]["seconds_per_kd_cell"],
        "rerun_over_ce_only": rows["rerun"]["seconds_per_kd_cell"] / ce_cell,
        "records_equal_plain": True,
    }  # fmt: skip


def report(s: dict) -> str:
    lines = [
        f"{s['dataset']} ({s['train_images']} train / {s['test_images']} test images), "
        f"{s['pair']}, {len(s['losses'])} logit losses x {len(s['seeds'])} seeds = "
        f"{s['kd_cells']} KD cells x {s['epochs']} epochs, {s['views']} view(s) per image, "
        f"{s['device']}, {s['threads']} threads",
        f"{'variant':<9} {'process s':>10} {'s / KD cell':>12} {'trained s':>10} "
        f"{'teacher fwd / cell':>19}  store",
    ]
    for name, row in s["rows"].items():
        store = ", ".join(f"{k} {v}" for k, v in sorted(row["store"].items())) or "-"
        lines.append(f"{name:<9} {row['process_seconds']:>10.1f} "
                     f"{row['seconds_per_kd_cell']:>12.2f} "
                     f"{row['train_seconds_per_kd_cell']:>10.2f} "
                     f"{row['teacher_forwards_per_cell']:>19,.0f}  {store}")  # fmt: skip
    lines += [
        f"per KD cell: plain / kdbench = {s['plain_over_kdbench']:.2f}x (target >= 3), "
        f"kdbench / ce-only = {s['kdbench_over_ce_only']:.2f}x (target <= 1.15), "
        f"rerun / ce-only = {s['rerun_over_ce_only']:.2f}x",
        "kdbench's records have the plain ones' metrics (compared exactly); every rerun cell "
        "read the store.",
        f"load average before {s['load_average_before']}, after {s['load_average_after']}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
