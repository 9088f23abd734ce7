"""The training loop: students driven by one stream of batches, and evaluation.

A step runs the teacher once (when any loss needs it) and then every student in the
group on the same batch, each with its own loss and optimizer: a lockstep group of
cells sharing teacher, dataset, seed and data order (:func:`kdbench.engine.cell.run_group`),
or a single cell, which is a group of one.

Each run's history has one entry per epoch: ``{"epoch", "lr", "test_top1", "train"}``,
the learning rate the epoch trained with, its test top-1 (None on epochs not
evaluated) and the mean of each training-loss term; plus ``"diagnostics"``, the mean
of each value the loss reported with ``DistillationLoss.log``, when it reported any.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdbench.core.errors import KdbenchError
from kdbench.core.losses import DistillationLoss, LossInputs, loss_terms
from kdbench.engine.batches import SeededBatches
from kdbench.engine.evaluate import TestSplit, evaluate_epoch
from kdbench.engine.events import Progress
from kdbench.engine.features import FeatureTaps
from kdbench.engine.online_teacher import TeacherSource
from kdbench.engine.optim import build_optimizer, build_scheduler
from kdbench.engine.precision import autocast
from kdbench.engine.rng import RngState


class DivergedError(KdbenchError):
    """The loss became NaN or infinite; the cell is recorded as failed."""


"""Gives a batch's teacher logits and features: :class:`OnlineTeacher` or a logit cache."""


@dataclass
class StudentRun:
    """One student being trained: its model, loss, optimizer, schedule and taps."""

    model: nn.Module
    loss: DistillationLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    taps: FeatureTaps | None = None
    scaler: torch.amp.GradScaler | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    eval_every: int = 1
    eval_batch_size: int | str = "auto"  # an int once evaluated (see eval_batch_size)
    accuracy: dict[str, float] = field(default_factory=dict)  # the latest evaluation
    step_seconds: float = 0.0
    steps: int = 0
    # Wall time of each epoch, evaluation included (in a lockstep group, the group's).
    epoch_seconds: list[float] = field(default_factory=list)
    error: BaseException | None = None
    rng: RngState = field(default_factory=RngState)
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # e.g. torch.compile'd model
    name: str = ""  # the cell id, so progress can tell the runs of a group apart
    fail_fast: bool = False  # raise instead of dropping out (ranks of one cell stay in step)

    def state_dict(self) -> dict[str, Any]:
        """Everything training changes, so that a run restored from it goes on exactly.

        Tensors and plain containers only (it loads with ``weights_only=True``); an
        error is kept as its type name and message.
        """
        error = self.error
        return {
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": self.rng.state_dict(),
            "history": self.history,
            "accuracy": self.accuracy,
            "step_seconds": self.step_seconds,
            "steps": self.steps,
            "epoch_seconds": self.epoch_seconds,
            "error": None if error is None else [type(error).__name__, str(error)],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`state_dict` saved (a kept error under its type's name)."""
        self.model.load_state_dict(state["model"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.rng.load_state_dict(state["rng"])
        self.history = state["history"]
        self.accuracy = state["accuracy"]
        self.step_seconds, self.steps = state["step_seconds"], state["steps"]
        self.epoch_seconds = list(state.get("epoch_seconds", []))
        if state["error"] is not None:
            name, message = state["error"]
            self.error = type(name, (RuntimeError,), {})(message)


def train_epoch(
    stream: SeededBatches,
    runs: list[StudentRun],
    *,
    epoch: int,
    epochs: int,
    teacher: TeacherSource | None = None,
    amp_dtype: torch.dtype | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> None:
    """One pass over the stream; appends each run's epoch entry (lr, loss terms) to its history.

    Each run draws from its own random-number state, so a student trained in a group
    sees the same random numbers as when trained alone. A run that fails keeps its
    error and drops out; the others go on. On CUDA, loss values stay on the device
    until the epoch ends, so the loop never waits for the GPU.
    """
    runs = [run for run in runs if run.error is None]
    for run in runs:
        run.model.train()
        run.loss.train()
    device = stream.device
    sync_each_step = device.type != "cuda"
    sums: list[dict[str, torch.Tensor]] = [{} for _ in runs]
    watched = [Diagnostics() for _ in runs]
    steps = 0
    for step, batch in enumerate(stream.epoch()):
        inputs, targets, indices = batch.inputs, batch.labels, batch.indices
        teacher_logits, teacher_features = teacher(batch) if teacher else (None, {})
        steps += 1
        for run, totals, diagnostics in zip(runs, sums, watched, strict=True):
            if run.error is not None:
                continue
            started = time.perf_counter()
            run.rng.restore()
            try:
                terms = _step(run, inputs, targets, indices, teacher_logits, teacher_features,
                              epoch=epoch, epochs=epochs, amp_dtype=amp_dtype)  # fmt: skip
                total = sum(terms.values())
                if sync_each_step and not torch.isfinite(total):
                    raise DivergedError(
                        f"loss is {total.item()} at epoch {epoch + 1} of {epochs}, step "
                        f"{step + 1} (LossInputs.epoch {epoch})"
                    )
            except Exception as exc:  # noqa: BLE001 - the run fails, the group goes on
                if run.fail_fast:
                    raise
                run.error = exc
                continue
            finally:
                run.rng.capture()
            for name, value in (*terms.items(), ("total", total)):
                totals[name] = totals.get(name, 0.0) + value.detach()
            diagnostics.add(run.loss.pop_diagnostics())
            run.step_seconds += time.perf_counter() - started
            run.steps += 1
        if on_step is not None and runs and runs[0].error is None and sync_each_step:
            on_step(step, float(sums[0]["total"]) / steps)
    for run, totals, diagnostics in zip(runs, sums, watched, strict=True):
        if run.error is not None:
            continue
        terms = {name: float(value) / max(steps, 1) for name, value in totals.items()}
        if not math.isfinite(terms["total"]):
            run.error = DivergedError(
                f"loss is {terms['total']} at epoch {epoch + 1} of {epochs} "
                f"(LossInputs.epoch {epoch})"
            )
            continue
        lr = float(run.optimizer.param_groups[0]["lr"])  # what this epoch trained with
        run.scheduler.step()
        entry = {"epoch": epoch + 1, "lr": lr, "test_top1": None, "train": terms}
        if diagnostics.sums:
            entry["diagnostics"] = diagnostics.means()
        run.history.append(entry)


class Diagnostics:
    """One run's diagnostics over an epoch: sums and counts per name, averaged at its end.

    A name counts only the steps that logged it; a mean that is not finite is None (the
    record holds no NaN). Values stay on their device until the epoch ends.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float | torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, logged: dict[str, float | torch.Tensor]) -> None:
        for name, value in logged.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> dict[str, float | None]:
        means = {name: float(total) / self.counts[name] for name, total in self.sums.items()}
        return {name: mean if math.isfinite(mean) else None for name, mean in means.items()}


def _step(
    run: StudentRun,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    indices: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    teacher_features: dict[str, torch.Tensor],
    *,
    epoch: int,
    epochs: int,
    amp_dtype: torch.dtype | None,
) -> dict[str, torch.Tensor]:
    """One optimisation step of one student; returns its loss terms."""
    with autocast(inputs.device, amp_dtype):
        logits = (run.model if run.forward is None else run.forward)(inputs)
    batch = LossInputs(
        student_logits=logits.float(),
        teacher_logits=teacher_logits if run.loss.needs_teacher else None,
        targets=targets,
        indices=indices,
        epoch=epoch,
        epochs=epochs,
        student_features=run.taps.pop() if run.taps else {},
        teacher_features=teacher_features,
    )
    run.loss.pop_diagnostics()  # only this step's (a dry run's are not trained on)
    terms = loss_terms(run.loss(batch))
    total = sum(terms.values())
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(total).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        total.backward()
        run.optimizer.step()
    return terms


def make_run(
    model: nn.Module,
    loss: DistillationLoss,
    recipe: dict,
    *,
    amp_dtype: torch.dtype | None,
    taps: FeatureTaps | None = None,
) -> StudentRun:
    """Optimizer (student and loss parameters together), schedule and grad scaler."""
    params = [p for p in (*model.parameters(), *loss.parameters()) if p.requires_grad]
    optimizer = build_optimizer(params, recipe["optimizer"])
    scheduler = build_scheduler(optimizer, recipe["schedule"], recipe["epochs"])
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    return StudentRun(
        model,
        loss,
        optimizer,
        scheduler,
        taps=taps,
        scaler=scaler,
        eval_every=recipe.get("eval_every", 1),
        eval_batch_size=recipe.get("eval_batch_size", "auto"),
    )


def fit(
    stream: SeededBatches,
    runs: list[StudentRun],
    *,
    epochs: int,
    teacher: TeacherSource | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: Progress | None = None,
    test: TestSplit | None = None,
    start_epoch: int = 0,
    on_epoch_end: Callable[[int, float], None] | None = None,
    judge: Callable[[int], None] | None = None,
) -> float:
    """Train every run from ``start_epoch`` to ``epochs``; returns the wall time in seconds.

    With ``test``, each run is evaluated on it after its due epochs (see
    :func:`evaluate_epoch`); the time counts in the wall time. ``on_epoch_end(epoch,
    seconds)`` is called after each epoch (0-based) with the wall time so far, before
    progress hears of it: where a cell saves its checkpoint. ``judge(epoch)`` is called
    after each evaluation and may stop runs (a tuning trial's pruner sets its ``error``).
    """
    progress = progress or Progress()
    steps = len(stream)
    started = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        epoch_started = time.perf_counter()
        train_epoch(
            stream,
            runs,
            epoch=epoch,
            epochs=epochs,
            teacher=teacher,
            amp_dtype=amp_dtype,
            on_step=lambda step, loss: progress.step(step, steps, loss),
        )
        if test is not None:
            evaluate_epoch(runs, test, epoch=epoch, epochs=epochs)
        if judge is not None:
            judge(epoch)
        live = [run for run in runs if run.error is None]
        if not live:
            break
        for run in live:
            run.epoch_seconds.append(time.perf_counter() - epoch_started)
        if on_epoch_end is not None:
            on_epoch_end(epoch, time.perf_counter() - started)
        progress.epoch_entries(epoch, {run.name: run.history[-1] for run in live if run.name})
        progress.epoch_done(epoch, live[0].history[-1]["train"]["total"])
    return time.perf_counter() - started
