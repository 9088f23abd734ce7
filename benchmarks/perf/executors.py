"""Wall time of one benchmark matrix under the ``local`` and ``pool`` executors, side by side.

    python benchmarks/perf/executors.py [--file benchmarks/digits.toml] [--workers 2]

Teachers are provisioned once beforehand and copied into each run's (temporary)
results directory, so the times compare how the executors run the cells. Not a test:
numbers depend on the machine and on what else it is doing.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from kdbench.core.config import Executor
from kdbench.engine.context import RunContext, resolve_device
from kdbench.engine.runner import load_datasets, plan, provision_teachers, run_benchmark
from kdbench.executors import usable_cores
from kdbench.records.store import RecordStore

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=ROOT / "benchmarks" / "digits.toml")
    parser.add_argument("--workers", type=int, default=None, help="pool workers (default: auto)")
    args = parser.parse_args()

    context = RunContext()
    base = plan(args.file, context)
    load_datasets(base, context)
    device = resolve_device("auto")
    executors = [("local", {}), ("pool", {"workers": args.workers} if args.workers else {})]
    rows = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kdbench-perf-") as tmp:
        cache = Path(tmp) / "cache"
        provision_teachers(base.cells, context, cache, device)
        for name, params in executors:
            out = Path(tmp) / name
            shutil.copytree(cache / "teachers", out / "teachers")
            config = base.config.model_copy(update={"executor": Executor(name=name, params=params)})
            the_plan = dataclasses.replace(base, config=config)
            started = time.perf_counter()
            result = run_benchmark(the_plan, context, out_dir=out, quiet=True)
            seconds = time.perf_counter() - started
            rows.append([name, params or "defaults", result.ran, len(result.failed), seconds])
            errors = {
                (r.get("error") or {}).get("message", "")
                for r in RecordStore(out)
                if r["status"] != "ok"
            }
            failures.extend(f"{name}: {message}" for message in sorted(errors))
    local_s = rows[0][-1]
    for row in rows:
        row.append(local_s / row[-1])
    print(
        f"{base.config.benchmark.name}: {len(base.cells)} cells on {device}, "
        f"{usable_cores()} usable cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads in this process"
    )
    headers = ["executor", "params", "cells", "failed", "wall s", "speed-up vs local"]
    print(tabulate(rows, headers=headers, floatfmt=".2f"))
    for line in failures:
        print(f"failed cells: {line}")


if __name__ == "__main__":
    main()
