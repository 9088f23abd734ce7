"""One cell, end to end: build, train, evaluate, measure, and return its record.

:func:`run_cell` is the unit every executor runs. It needs nothing but its job and the
installed plugins, and never raises for a cell's own failure: an exception or a
diverged loss becomes a record with ``status = "failed"`` and the reason.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from kdbench.core.data import DatasetSplits
from kdbench.core.errors import KdbenchError
from kdbench.core.losses import LossContext, TapPair, feature_pairs
from kdbench.engine.batches import Augment
from kdbench.engine.cache_policy import no_cache_reason, teacher_source
from kdbench.engine.cell_checkpoint import GroupCheckpoint, Outputs, Resume
from kdbench.engine.cell_record import as_trial, finish_record, pruned_body
from kdbench.engine.context import RunContext, resolve_device
from kdbench.engine.distributed import World, devices_of, launch_group
from kdbench.engine.evaluate import TestSplit
from kdbench.engine.events import Progress
from kdbench.engine.features import FeatureTaps
from kdbench.engine.job import CellJob, error_of, record_head
from kdbench.engine.lockstep import lockstep_key
from kdbench.engine.logit_store import LogitStore
from kdbench.engine.matrix import Cell, stable_hash
from kdbench.engine.precision import autocast_dtype, compile_mode, compiled, to_channels_last
from kdbench.engine.provenance import provenance
from kdbench.engine.seeding import seed_everything
from kdbench.engine.streaming import sample_inputs, training_stream
from kdbench.engine.students import save_student
from kdbench.engine.teacher_setup import frozen_teacher
from kdbench.engine.training import StudentRun, fit, make_run
from kdbench.engine.trial_pruning import Judge, is_pruned
from kdbench.engine.validation_split import carve


def run_cell(
    job: CellJob, context: RunContext | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Train and measure one cell; always returns a record, ``ok`` or ``failed``."""
    return run_group([job], context, progress)[0]


def run_group(
    jobs: list[CellJob], context: RunContext | None = None, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Train cells sharing a :func:`lockstep_key` together: one stream, one teacher forward.

    Each student keeps its own optimizer, loss, random-number stream and record, so the
    records equal those of running the cells one by one. A student that fails does not
    stop the others.
    """
    if len({lockstep_key(job.cell) for job in jobs}) != 1:  # its data split included
        raise ValueError("run_group needs cells with one lockstep key and one data split")
    context = context or RunContext()
    device = resolve_device(jobs[0].device)
    records = [
        record_head(job)
        | {"provenance": provenance(device=device, plugins=context.plugins.infos,
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
            record.setdefault("status", "ok")  # a pruned trial's body says "pruned"
        record["finished_at"] = datetime.now(UTC).isoformat()
    if progress:
        progress.cell_done("failed" if any(r["status"] == "failed" for r in records) else "ok")
    return records


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
    store_fingerprint = fingerprint  # what the teacher-logit store keys the images by
    if first.phase == "trial":  # train on the rest of the training split, score on validation
        data, store_fingerprint = _validation_data(first, data, fingerprint)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    sample = sample_inputs(data.train, 2, mean=mean, std=std, device=device)
    amp = autocast_dtype(recipe["amp"], device)
    mode = compile_mode(recipe["compile"])

    teacher = t_taps = teacher_cost = None
    folded = 0
    if first.teacher is not None:
        teacher, t_taps, teacher_cost, folded = frozen_teacher(
            jobs[0], context, data, sample, device
        )

    students: list[_Student | BaseException] = []
    for job in jobs:
        try:
            students.append(_prepare(job, context, data, teacher, t_taps, sample, amp, device))
        except Exception as exc:  # noqa: BLE001 - one bad loss must not sink the group
            students.append(exc)
    live = [s for s in students if isinstance(s, _Student)]
    wanted = sorted({pair.teacher for s in live for pair in s.features})
    teacher_taps = FeatureTaps(teacher, t_taps, wanted) if wanted else None
    stream = training_stream(
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
    source, cached_from = None, None
    cache_off = no_cache_reason(stream)
    outputs = jobs[0].outputs
    if any(s.run.loss.needs_teacher for s in live):
        source, cached_from = teacher_source(
            first, teacher, teacher_taps, context=context, data=data,
            fingerprint=store_fingerprint,
            stream=stream, device=device, amp=amp, folded=folded,
            store=LogitStore(outputs.out_dir) if outputs else None,
            demand=jobs[0].logit_demand,
        )  # fmt: skip
    checkpoint = (
        GroupCheckpoint(outputs, [job.cell.id for job in jobs], [job.cell.recipe for job in jobs])
        if outputs
        else None
    )
    # a file of other cells, recipes or shapes is set aside, and the note says why
    resume = checkpoint.restore([s.run for s in live], stream) if checkpoint else Resume()
    resumed = resume.state
    earlier = resumed["seconds"] if resumed else 0.0

    def save(epoch: int, seconds: float) -> None:
        if checkpoint.due(epoch, recipe["epochs"]):
            states = [s.run.state_dict() for s in live]
            checkpoint.save(epoch, earlier + seconds, stream.state_dict(), states)

    end = save if checkpoint else None
    # several devices: no pruning (every rank would have to agree to stop)
    judge = Judge([(s.job.pruning, s.run) for s in live]) if world is None else None
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
            judge=judge or None,
        )
    if world is not None and world.rank != 0:
        return [None] * len(jobs)  # rank 0 measures, keeps students and makes the records
    shared = {
        "dataset": {
            "name": first.dataset.name,
            "fingerprint": fingerprint,
            "train": len(data.train),
            ("validation" if first.phase == "trial" else "test"): len(data.test),
        },
        "amp": str(amp).removeprefix("torch.") if amp else "off",
        "train_seconds": seconds,
        "group_size": len(live),
        "logit_cache": cached_from is not None,
        "logit_store": cached_from if cached_from in ("built", "read", "filled") else None,
        **({"logit_store_entries": source.entries()} if cached_from == "filled" else {}),
        "logit_cache_note": cache_off,
        "teacher_bn_folded": folded,
        "compile": mode or False,
        "data_on_device": stream.on_device,
        "resumed_from_epoch": resumed["epochs_done"] if resumed else None,
        "teacher_cost": teacher_cost,
    }
    results = [_result(s, data, sample, shared) for s in students]
    if outputs and outputs.keep_students and first.phase != "trial":
        for s, result in zip(students, results, strict=True):
            if isinstance(result, dict):
                result["student"] = _keep(s, data, outputs)
    if resume.note:
        for result in results:
            if isinstance(result, dict):
                result["resume_note"] = resume.note
    # The checkpoint stays: the runner deletes it once the records are written.
    return results


def _result(
    student: _Student | BaseException,
    data: DatasetSplits,
    sample: torch.Tensor,
    shared: dict[str, Any],
) -> dict[str, Any] | BaseException:
    """One student's record body, or the error it failed with; a trial's in validation terms."""
    if isinstance(student, BaseException):
        return student
    run = student.run
    if is_pruned(run.error):
        return as_trial(pruned_body(run))
    if run.error is not None:
        return run.error
    body = finish_record(student.job, run, student.features, data, sample, shared)
    return as_trial(body) if student.job.cell.phase == "trial" else body


def _validation_data(
    cell: Cell, data: DatasetSplits, fingerprint: str
) -> tuple[DatasetSplits, str]:
    """A trial's data (training split less validation, validation as ``test``) and the
    key its teacher logits are stored under; the split must be the one the run planned."""
    validation = cell.tune["validation"]
    carved = carve(data, validation["fraction"], validation["seed"])
    if carved.index_hash != validation["index_hash"]:
        raise KdbenchError(
            f"the validation split's indices hash to {carved.index_hash}, not the planned "
            f"{validation['index_hash']}: the dataset changed since the tuning began"
        )
    return carved.data, stable_hash([fingerprint, carved.index_hash], 16)


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
    loss = context.plugins.registry.get("losses", cell.loss.name).obj(**cell.loss.params)
    loss.to(device)
    student.eval()
    with torch.no_grad():
        student(sample)  # materialise lazy layers before optimizers and taps see them
    if cell.recipe["channels_last"]:  # once materialised: a lazy layer has no layout yet
        to_channels_last(student)
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
