"""One cell, end to end: build, train, evaluate, measure, and return its record.

:func:`run_cell` is the unit every executor runs. It needs nothing but its job and the
installed plugins, and never raises for a cell's own failure: an exception or a
diverged loss becomes a record with ``status = "failed"`` and the reason.
"""

from __future__ import annotations

import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from kdbench.context import RunContext, resolve_device
from kdbench.data import Augment, BatchStream, sample_inputs
from kdbench.features import FeatureTaps
from kdbench.losses import LossContext
from kdbench.matrix import Cell
from kdbench.measure import FLOPS_UNIT, count_params, flops_per_image, latency, serialized_bytes
from kdbench.provenance import provenance
from kdbench.records import SCHEMA_VERSION
from kdbench.seeding import seed_everything
from kdbench.teachers import load_teacher
from kdbench.training import Progress, autocast_dtype, evaluate, fit, make_run


@dataclass(frozen=True)
class CellJob:
    """A cell plus what the run resolved for it: picklable, so any executor can ship it."""

    cell: Cell
    device: str = "auto"
    teacher_weights: str | None = None
    teacher_info: dict[str, Any] | None = None
    source_dir: str = "."
    config_hash: str | None = None


def run_cell(
    job: CellJob, context: RunContext | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Train and measure one cell; always returns a record, ``ok`` or ``failed``."""
    context = context or RunContext()
    device = resolve_device(job.device)
    cell = job.cell
    started = datetime.now(UTC)
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cell.id,
        "config": cell.config(),
        "benchmark_config_hash": job.config_hash,
        "teacher": job.teacher_info,
        "started_at": started.isoformat(),
        "provenance": provenance(
            device=device,
            plugin_versions=context.plugins.versions(),
            source_dir=Path(job.source_dir),
        ),
    }
    if progress:
        progress.cell_started(cell.label(), cell.recipe["epochs"])
    try:
        record.update(_train_and_measure(job, context, device, progress))
        record["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - errors are values: the matrix goes on
        record["status"] = "failed"
        record["error"] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exc(limit=20),
        }
    record["finished_at"] = datetime.now(UTC).isoformat()
    if progress:
        progress.cell_done(record["status"])
    return record


def _train_and_measure(
    job: CellJob, context: RunContext, device: torch.device, progress: Progress | None
) -> dict[str, Any]:
    cell = job.cell
    recipe = cell.recipe
    data, fingerprint = context.dataset(cell.dataset)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    sample = sample_inputs(data.train, 2, mean=mean, std=std, device=device)
    seed_everything(cell.seed)

    student = context.build_model("students", cell.student, data).to(device)
    loss = context.plugins.registry.get("losses", cell.loss.name).obj(**cell.loss.params).to(device)
    teacher = teacher_taps = student_taps = None
    if cell.teacher is not None and loss.needs_teacher:
        teacher = load_teacher(cell.teacher, context, data, Path(job.teacher_weights), device)
        for p in teacher.parameters():
            p.requires_grad_(False)
    wanted: tuple[str, ...] = ()
    if teacher is not None:
        student.eval()
        with torch.no_grad():
            student(sample)  # materialise lazy layers before the taps look for modules
        s_taps = context.taps("students", cell.student, student)
        t_taps = context.taps("teachers", cell.teacher.model, teacher)
        wanted = loss.required_features([name for name in s_taps if name in t_taps])
        if wanted:
            student_taps = FeatureTaps(student, s_taps, wanted)
            teacher_taps = FeatureTaps(teacher, t_taps, wanted)
    loss.setup(_loss_context(data, student, teacher, student_taps, teacher_taps, sample))
    loss.to(device)

    amp = autocast_dtype(recipe["amp"], device)
    run = make_run(student, loss, recipe, amp_dtype=amp, taps=student_taps)
    stream = BatchStream(
        data.train,
        batch_size=recipe["batch_size"],
        augment=Augment(**recipe["augment"]),
        mean=mean,
        std=std,
        device=device,
        seed=cell.seed,
    )
    with student_taps or nullcontext(), teacher_taps or nullcontext():
        seconds = fit(
            stream,
            [run],
            epochs=recipe["epochs"],
            teacher=teacher,
            teacher_taps=teacher_taps,
            amp_dtype=amp,
            progress=progress,
        )
    accuracy = evaluate(
        student,
        data.test,
        mean=mean,
        std=std,
        device=device,
        batch_size=recipe["eval_batch_size"],
        amp_dtype=amp,
    )
    return {
        "metrics": {**accuracy, "final_train_loss": run.history[-1]},
        "history": run.history,
        "size": _size(student, loss, sample, cell.measure),
        "latency": _latency(student, sample, cell.measure),
        "cost": {
            "train_seconds": seconds,
            "step_ms": 1e3 * run.step_seconds / max(run.steps, 1),
            "steps": run.steps,
        },
        "dataset": {
            "name": cell.dataset.name,
            "fingerprint": fingerprint,
            "train": len(data.train),
            "test": len(data.test),
        },
        "protocol": {
            "accuracy": "last epoch, test split",
            "amp": str(amp).removeprefix("torch.") if amp else "off",
            "features": list(wanted),
        },
    }


def _loss_context(data, student, teacher, student_taps, teacher_taps, sample) -> LossContext:
    """Feature shapes from one dry forward of each network, for losses that build layers."""
    shapes: list[dict[str, tuple[int, ...]]] = [{}, {}]
    for i, (model, taps) in enumerate(((student, student_taps), (teacher, teacher_taps))):
        if model is None or taps is None:
            continue
        model.eval()
        with torch.no_grad(), taps:
            model(sample)
        shapes[i] = {name: tuple(t.shape[1:]) for name, t in taps.pop().items()}
    return LossContext(
        num_classes=data.num_classes,
        num_train=len(data.train),
        student_feature_shapes=shapes[0],
        teacher_feature_shapes=shapes[1],
    )


def _size(student, loss, sample, measure: dict) -> dict[str, Any]:
    size = {
        "params": count_params(student),
        "serialized_bytes": serialized_bytes(student),
        "extra_params": count_params(loss, trainable_only=True),
    }
    if measure["flops"]:
        size["flops_per_image"] = flops_per_image(student, sample)
        size["flops_unit"] = FLOPS_UNIT
    return size


def _latency(student, sample, measure: dict) -> dict[str, Any] | None:
    if not measure["latency"]:
        return None
    return latency(
        student,
        sample,
        warmup=measure["warmup"],
        iters=measure["latency_iters"],
        throughput_batch=measure["throughput_batch"],
        throughput_iters=measure["throughput_iters"],
    )
