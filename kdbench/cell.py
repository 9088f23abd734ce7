"""One cell, end to end: build, train, evaluate, measure, and return its record.

:func:`run_cell` is the unit every executor runs. It needs nothing but its job and the
installed plugins, and never raises for a cell's own failure: an exception or a
diverged loss becomes a record with ``status = "failed"`` and the reason.
"""

from __future__ import annotations

import contextlib
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from kdbench.cell_checkpoint import GroupCheckpoint, Outputs
from kdbench.context import RunContext, resolve_device
from kdbench.data import Augment, BatchStream, DatasetSplits, sample_inputs
from kdbench.distributed import World, devices_of, launch_group
from kdbench.features import FeatureTaps
from kdbench.folding import fold_batchnorm
from kdbench.logit_cache import CachedTeacher, build_logit_cache, cache_key, worth_caching
from kdbench.losses import LossContext, TapPair, feature_pairs
from kdbench.matrix import Cell, stable_hash
from kdbench.measure import (
    FLOPS_UNIT,
    architecture_cost,
    count_params,
    flops_per_image,
    protocol_latency,
    serialized_bytes,
)
from kdbench.provenance import provenance
from kdbench.records import SCHEMA_VERSION
from kdbench.seeding import seed_everything
from kdbench.students import save_student
from kdbench.teachers import load_teacher
from kdbench.training import (
    OnlineTeacher,
    Progress,
    StudentRun,
    TestSplit,
    autocast_dtype,
    compile_mode,
    compiled,
    fit,
    make_run,
)


@dataclass(frozen=True)
class CellJob:
    """A cell plus what the run resolved for it: picklable, so any executor can ship it."""

    cell: Cell
    device: str = "auto"
    teacher_weights: str | None = None
    teacher_info: dict[str, Any] | None = None
    source_dir: str = "."
    config_hash: str | None = None
    outputs: Outputs | None = None  # checkpoints, kept student, costs; none: per-cell latency


def run_cell(
    job: CellJob, context: RunContext | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Train and measure one cell; always returns a record, ``ok`` or ``failed``."""
    return run_group([job], context, progress)[0]


def lockstep_key(cell: Cell) -> str:
    """Cells with equal keys see identical batches and can share one teacher forward."""
    recipe = cell.recipe
    return stable_hash(
        [
            cell.dataset.name,
            cell.dataset.params,
            cell.teacher.id if cell.teacher else None,
            cell.seed,
            recipe["epochs"],
            recipe["batch_size"],
            recipe["augment"],
            recipe["amp"],
            # shared by the group through its stream and teacher: must agree too
            recipe["channels_last"],
            recipe["compile"],
            recipe["logit_cache"],
            # one set of processes trains the group
            recipe.get("devices", 1),
            recipe.get("sync_bn", True),
        ]
    )


def lockstep_groups(jobs: list[CellJob]) -> list[list[CellJob]]:
    """Jobs grouped by :func:`lockstep_key`, in first-appearance order."""
    groups: dict[str, list[CellJob]] = {}
    for job in jobs:
        groups.setdefault(lockstep_key(job.cell), []).append(job)
    return list(groups.values())


def run_group(
    jobs: list[CellJob], context: RunContext | None = None, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Train cells sharing a :func:`lockstep_key` together: one stream, one teacher forward.

    Each student keeps its own optimizer, loss, random-number stream and record, so the
    records equal those of running the cells one by one. A student that fails does not
    stop the others.
    """
    if len({lockstep_key(job.cell) for job in jobs}) != 1:
        raise ValueError("run_group needs cells with one lockstep key")
    context = context or RunContext()
    device = resolve_device(jobs[0].device)
    versions = context.plugins.versions()
    records = [
        record_head(job)
        | {"provenance": provenance(device=device, plugin_versions=versions,
                                    source_dir=Path(job.source_dir),
                                    plugin_problems=context.plugins.problems)}
        for job in jobs
    ]  # fmt: skip
    if progress:
        more = f" (+{len(jobs) - 1} in lockstep)" if len(jobs) > 1 else ""
        progress.cell_started(jobs[0].cell.label() + more, jobs[0].cell.recipe["epochs"])
        progress.cells_started(tuple(job.cell.id for job in jobs))
    try:
        if devices_of(jobs) > 1:  # N processes; rank 0's results come back
            results = launch_group(jobs)
        else:
            results = _train_group(jobs, context, device, progress)
    except Exception as exc:  # noqa: BLE001 - errors are values: the matrix goes on
        results = [exc] * len(jobs)
    for record, result in zip(records, results, strict=True):
        if isinstance(result, BaseException):
            record["status"] = "failed"
            record["error"] = error_of(result)
        else:
            record.update(result)
            record["status"] = "ok"
        record["finished_at"] = datetime.now(UTC).isoformat()
    if progress:
        progress.cell_done("ok" if all(r["status"] == "ok" for r in records) else "failed")
    return records


def record_head(job: CellJob) -> dict[str, Any]:
    """What every record of a job starts with, whatever happens to the cell."""
    return {
        "schema_version": SCHEMA_VERSION,
        "cell_id": job.cell.id,
        "config": job.cell.config(),
        "benchmark_config_hash": job.config_hash,
        "teacher": job.teacher_info,
        "started_at": datetime.now(UTC).isoformat(),
    }


def error_of(exc: BaseException, prefix: str = "") -> dict[str, str]:
    """An exception as a record's ``error``: type, message and traceback."""
    return {
        "type": type(exc).__name__,
        "message": f"{prefix}{exc}",
        "traceback": "".join(traceback.format_exception(exc, limit=20)),
    }


@dataclass
class _Student:
    job: CellJob
    run: StudentRun
    features: tuple[TapPair, ...]


def _train_group(
    jobs: list[CellJob],
    context: RunContext,
    device: torch.device,
    progress: Progress | None,
    world: World | None = None,  # this rank's, when the unit runs on several devices
) -> list[dict[str, Any] | BaseException]:
    first = jobs[0].cell
    recipe = first.recipe
    data, fingerprint = context.dataset(first.dataset)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    sample = sample_inputs(data.train, 2, mean=mean, std=std, device=device)
    amp = autocast_dtype(recipe["amp"], device)
    mode = compile_mode(recipe["compile"])

    teacher = t_taps = teacher_cost = None
    folded = 0
    if first.teacher is not None:
        teacher = load_teacher(first.teacher, context, data, Path(jobs[0].teacher_weights), device)
        teacher.requires_grad_(False)
        # measured as loaded: before the folding and memory format that only speed training
        teacher_cost = _cost_ref(jobs[0], teacher, sample, data.num_classes, "teacher")
        t_taps = context.taps("teachers", first.teacher.model, teacher)
        # Inference mode, BatchNorms folded where no declared tap could see the difference
        # (all taps, not just the wanted ones: a cell's numbers must not depend on its group).
        folded = fold_batchnorm(teacher, keep=[path.partition(":")[0] for path in t_taps.values()])
        if recipe["channels_last"]:
            teacher = teacher.to(memory_format=torch.channels_last)

    students: list[_Student | BaseException] = []
    for job in jobs:
        try:
            students.append(_prepare(job, context, data, teacher, t_taps, sample, amp, device))
        except Exception as exc:  # noqa: BLE001 - one bad loss must not sink the group
            students.append(exc)
    live = [s for s in students if isinstance(s, _Student)]
    wanted = sorted({pair.teacher for s in live for pair in s.features})
    teacher_taps = FeatureTaps(teacher, t_taps, wanted) if wanted else None
    stream = BatchStream(
        data.train,
        batch_size=recipe["batch_size"],
        augment=Augment(**recipe["augment"]),
        mean=mean,
        std=std,
        device=device,
        seed=first.seed,
        channels_last=recipe["channels_last"],
    )
    if world is not None:  # one start, synced gradients, this rank's slice of each batch
        world.prepare([s.run for s in live], recipe.get("sync_bn", True))
        stream = world.shard(stream)
    source, cached = None, False
    if any(s.run.loss.needs_teacher for s in live):
        forward = compiled(teacher, mode) if mode else None
        source = OnlineTeacher(teacher, teacher_taps, amp, forward=forward)
        if not wanted and _use_cache(recipe):
            key = cache_key(first.teacher.id, recipe["augment"], device, folded, amp)
            source = CachedTeacher(
                context.cached(
                    key,
                    lambda: build_logit_cache(
                        teacher, data.train, stream.augment, mean=mean, std=std,
                        device=device, amp_dtype=amp,
                    ),
                )
            )  # fmt: skip
            cached = True
    outputs = jobs[0].outputs
    checkpoint = GroupCheckpoint(outputs, [job.cell.id for job in jobs]) if outputs else None
    resumed = checkpoint.load(len(live)) if checkpoint else None
    earlier = 0.0
    if resumed:
        for s, state in zip(live, resumed["runs"], strict=True):
            s.run.load_state_dict(state)
        stream.load_state_dict(resumed["stream"])
        earlier = resumed["seconds"]

    def save(epoch: int, seconds: float) -> None:
        if checkpoint.due(epoch, recipe["epochs"]):
            states = [s.run.state_dict() for s in live]
            checkpoint.save(epoch, earlier + seconds, stream.state_dict(), states)

    end = save if checkpoint else None
    with contextlib.ExitStack() as taps:
        for tap in [teacher_taps, *(s.run.taps for s in live)]:
            if tap is not None:
                taps.enter_context(tap)
        seconds = earlier + fit(
            stream,
            [s.run for s in live],
            epochs=recipe["epochs"],
            teacher=source,
            amp_dtype=amp,
            progress=progress,
            test=TestSplit(data.test, mean, std, device, amp),
            start_epoch=resumed["epochs_done"] if resumed else 0,
            on_epoch_end=world.epoch_end(end) if world else end,
        )
    if world is not None and world.rank != 0:
        return [None] * len(jobs)  # rank 0 measures, keeps students and makes the records
    shared = {
        "dataset": {
            "name": first.dataset.name,
            "fingerprint": fingerprint,
            "train": len(data.train),
            "test": len(data.test),
        },
        "amp": str(amp).removeprefix("torch.") if amp else "off",
        "train_seconds": seconds,
        "group_size": len(live),
        "logit_cache": cached,
        "teacher_bn_folded": folded,
        "compile": mode or False,
        "data_on_device": stream.on_device,
        "resumed_from_epoch": resumed["epochs_done"] if resumed else None,
        "teacher_cost": teacher_cost,
    }
    results = [
        s if isinstance(s, BaseException) else s.run.error or _finish(s, data, sample, shared)
        for s in students
    ]
    if outputs and outputs.keep_students:
        for s, result in zip(students, results, strict=True):
            if isinstance(result, dict):
                result["student"] = _keep(s, data, outputs)
    if checkpoint:
        checkpoint.discard()
    return results


def _keep(student: _Student, data: DatasetSplits, outputs: Outputs) -> dict[str, Any]:
    """Save a trained student beside the records; the record's ``student`` entry."""
    cell = student.job.cell
    meta = {
        "cell_id": cell.id,
        "model": cell.student.name,
        "params": cell.student.params,
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "image_size": list(data.image_size),
        "mean": list(data.mean),
        "std": list(data.std),
        "classes": list(data.classes),
    }
    return save_student(student.run.model, Path(outputs.out_dir), cell.id, meta)


def _use_cache(recipe: dict[str, Any]) -> bool:
    setting = recipe["logit_cache"]
    augment = Augment(**recipe["augment"])
    return setting == "on" or (setting == "auto" and worth_caching(augment, recipe["epochs"]))


def _prepare(
    job: CellJob,
    context: RunContext,
    data: DatasetSplits,
    teacher: torch.nn.Module | None,
    t_taps: dict[str, str] | None,
    sample: torch.Tensor,
    amp: torch.dtype | None,
    device: torch.device,
) -> _Student:
    """Build one student and its loss from the cell's seed, as if it ran alone."""
    cell = job.cell
    seed_everything(cell.seed)
    student = context.build_model("students", cell.student, data).to(device)
    if cell.recipe["channels_last"]:
        student = student.to(memory_format=torch.channels_last)
    loss = context.plugins.registry.get("losses", cell.loss.name).obj(**cell.loss.params)
    loss.to(device)
    student.eval()
    with torch.no_grad():
        student(sample)  # materialise lazy layers before optimizers and taps see them
    wanted: tuple[TapPair, ...] = ()
    student_taps = None
    shapes: tuple[dict, dict] = ({}, {})
    if teacher is not None and loss.needs_teacher:
        s_taps = context.taps("students", cell.student, student)
        wanted = feature_pairs(loss, list(s_taps), list(t_taps))
        if wanted:
            student_taps = FeatureTaps(student, s_taps, [p.student for p in wanted])
            teacher_wanted = FeatureTaps(teacher, t_taps, [p.teacher for p in wanted])
            shapes = (
                _feature_shapes(student, student_taps, sample),
                _feature_shapes(teacher, teacher_wanted, sample),
            )
    loss.setup(
        LossContext(
            num_classes=data.num_classes,
            num_train=len(data.train),
            student_feature_shapes=shapes[0],
            teacher_feature_shapes=shapes[1],
            train_labels=data.train.labels,
        )
    )
    loss.to(device)
    run = make_run(student, loss, cell.recipe, amp_dtype=amp, taps=student_taps)
    run.name = cell.id
    mode = compile_mode(cell.recipe["compile"])
    if mode:
        run.forward = compiled(student, mode)
    return _Student(job, run, wanted)


def _feature_shapes(
    model: torch.nn.Module, taps: FeatureTaps, sample: torch.Tensor
) -> dict[str, tuple[int, ...]]:
    """Per-image shapes of the tapped features, from one dry forward."""
    model.eval()
    with torch.no_grad(), taps:
        model(sample)
    return {name: tuple(t.shape[1:]) for name, t in taps.pop().items()}


ACCURACY_PROTOCOL = (
    "top1/top5: last epoch, test split; best_top1: the highest test top-1 over the "
    "evaluated epochs (every eval_every epochs and the last), selected on the test split"
)


def best_epoch(history: list[dict[str, Any]]) -> tuple[float, int] | None:
    """The highest test top-1 of a history and its (first) epoch; None if none evaluated.

    Chosen by looking at the test split, so an optimistic figure: reported beside the
    last epoch's, never instead of it.
    """
    scored = [(e["test_top1"], -e["epoch"]) for e in history if e["test_top1"] is not None]
    if not scored:
        return None
    top1, epoch = max(scored)
    return top1, -epoch


def _finish(
    student: _Student, data: DatasetSplits, sample: torch.Tensor, shared: dict[str, Any]
) -> dict[str, Any]:
    """Measure a trained student, evaluated after its last epoch: the body of its record."""
    cell, run = student.job.cell, student.run
    best = best_epoch(run.history)
    metrics = {**run.accuracy, "final_train_loss": run.history[-1]["train"]}
    if best is not None:
        metrics["best_top1"], metrics["best_epoch"] = best
    cost = {
        # The cell's share of its group's wall time; the whole group's is kept too.
        "train_seconds": shared["train_seconds"] / shared["group_size"],
        "group_train_seconds": shared["train_seconds"],
        "step_ms": 1e3 * run.step_seconds / max(run.steps, 1),
        "steps": run.steps,
        "lockstep_group": shared["group_size"],
        # Wall time of each epoch with its evaluation (the group's, for a lockstep group).
        "epoch_seconds": run.epoch_seconds,
    }
    if shared["resumed_from_epoch"]:  # trained on from a checkpoint after this many epochs
        cost["resumed_from_epoch"] = shared["resumed_from_epoch"]
    return {
        "metrics": metrics,
        "history": run.history,
        "size": _size(run.model, run.loss, sample, cell.measure),
        **_inference_cost(student.job, run.model, sample, data.num_classes, shared),
        "cost": cost,
        "dataset": shared["dataset"],
        "protocol": {
            "accuracy": ACCURACY_PROTOCOL,
            "eval_every": cell.recipe["eval_every"],
            "amp": shared["amp"],
            "features": [str(pair) for pair in student.features],
            "lockstep_group": shared["group_size"],
            "logit_cache": shared["logit_cache"],
            "channels_last": cell.recipe["channels_last"],
            "compile": shared["compile"],
            "teacher_bn_folded": shared["teacher_bn_folded"],
            "data_on_device": shared["data_on_device"],
        },
    }


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


def _inference_cost(
    job: CellJob, student, sample, num_classes: int, shared: dict[str, Any]
) -> dict[str, Any]:
    """References to the networks' shared cost files, or (alone) a per-cell latency."""
    if job.outputs is None:
        return {"latency": protocol_latency(student, sample, job.cell.measure)}
    refs = {"student": _cost_ref(job, student, sample, num_classes, "student")}
    if shared["teacher_cost"] is not None:
        refs["teacher"] = shared["teacher_cost"]
    return {"arch_cost": refs}


def _cost_ref(job: CellJob, model, sample, num_classes: int, role: str) -> dict[str, str] | None:
    """The network's cost file (measured once per architecture and device, as loaded)."""
    if job.outputs is None:
        return None
    config = job.cell.config()
    student = role == "student"
    return architecture_cost(
        model, sample, job.cell.measure, num_classes=num_classes,
        spec=config["student"] if student else config["teacher"]["model"],
        channels_last=job.cell.recipe["channels_last"] and student,
        results=Path(job.outputs.out_dir),
    )  # fmt: skip
