"""The training loop: students driven by one stream of batches, and evaluation.

A step runs the teacher once (when any loss needs it) and then every student in the
group on the same batch, each with its own loss and optimizer: a lockstep group of
cells sharing teacher, dataset, seed and data order (:func:`kdbench.cell.run_group`),
or a single cell, which is a group of one.

Each run's history has one entry per epoch: ``{"epoch", "lr", "test_top1", "train"}``,
the learning rate the epoch trained with, its test top-1 (None on epochs not
evaluated) and the mean of each training-loss term.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdbench.data import Batch, BatchStream, Split, eval_batches
from kdbench.errors import KdbenchError
from kdbench.features import FeatureTaps
from kdbench.losses import DistillationLoss, LossInputs, loss_terms


class DivergedError(KdbenchError):
    """The loss became NaN or infinite; the cell is recorded as failed."""


TeacherSource = Callable[[Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]
"""Gives a batch's teacher logits and features: :class:`OnlineTeacher` or a logit cache."""


class OnlineTeacher:
    """Runs the frozen teacher on each batch (features through its taps, if any)."""

    def __init__(
        self,
        model: nn.Module,
        taps: FeatureTaps | None,
        amp_dtype: torch.dtype | None,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.model, self.taps, self.amp_dtype = model.eval(), taps, amp_dtype
        self.forward = self.model if forward is None else forward  # e.g. torch.compile(model)

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad(), _autocast(batch.inputs.device, self.amp_dtype):
            logits = self.forward(batch.inputs).float()
        return logits, self.taps.pop() if self.taps else {}


class RngState:
    """A private copy of torch's global random state (CPU, and CUDA when in use).

    Captured when a run is built; restored before each of its steps and captured after,
    so dropout and other global draws of one student never shift another's.
    """

    def __init__(self) -> None:
        self.capture()

    def capture(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)

    def state_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "cuda": self.cuda}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cpu, self.cuda = state["cpu"], state["cuda"]


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
    eval_batch_size: int = 512
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


def build_optimizer(params: list[nn.Parameter], optimizer: dict) -> torch.optim.Optimizer:
    if optimizer["name"] == "sgd":
        return torch.optim.SGD(
            params,
            lr=optimizer["lr"],
            momentum=optimizer["momentum"],
            weight_decay=optimizer["weight_decay"],
            nesterov=optimizer["nesterov"],
        )
    return torch.optim.AdamW(params, lr=optimizer["lr"], weight_decay=optimizer["weight_decay"])


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: dict, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-epoch learning-rate schedule."""
    if schedule["name"] == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=schedule["milestones"], gamma=schedule["gamma"]
        )
    if schedule["name"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 (or fp16) autocast on CUDA; none on CPU, where it rarely pays."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def compile_mode(setting: bool | str) -> str | None:
    """The ``torch.compile`` mode a recipe's ``compile`` asks for (None: eager)."""
    if setting is False:
        return None
    return "default" if setting is True else setting


def compiled(model: nn.Module, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(model)`` that keeps feature taps (forward hooks) working.

    By default Dynamo does not guard on module hooks, so two students of one class, one
    with taps and one without, would share one graph and the taps would stay empty.
    """
    torch._dynamo.config.skip_nnmodule_hook_guards = False
    return torch.compile(model, mode=mode)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def train_epoch(
    stream: BatchStream,
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
    steps = 0
    for step, batch in enumerate(stream.epoch()):
        inputs, targets, indices = batch.inputs, batch.labels, batch.indices
        teacher_logits, teacher_features = teacher(batch) if teacher else (None, {})
        steps += 1
        for run, totals in zip(runs, sums, strict=True):
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
            run.step_seconds += time.perf_counter() - started
            run.steps += 1
        if on_step is not None and runs and runs[0].error is None and sync_each_step:
            on_step(step, float(sums[0]["total"]) / steps)
    for run, totals in zip(runs, sums, strict=True):
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
        run.history.append({"epoch": epoch + 1, "lr": lr, "test_top1": None, "train": terms})


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
    with _autocast(inputs.device, amp_dtype):
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


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    split: Split,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
    batch_size: int = 512,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) on a split; top-5 only with at least 5 classes.

    Runs in eval mode and puts the model back in the mode it was in, so it can be
    called between training epochs; it draws no random numbers.
    """
    was_training = model.training
    model.eval()
    hits1 = hits5 = torch.zeros((), dtype=torch.long, device=device)
    for inputs, targets in eval_batches(
        split, batch_size=batch_size, mean=mean, std=std, device=device
    ):
        with _autocast(device, amp_dtype):
            logits = model(inputs).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top.eq(targets.view(-1, 1))
        hits1 = hits1 + hits[:, 0].sum()  # summed on the device: one sync at the end
        hits5 = hits5 + hits.any(dim=1).sum()
    model.train(was_training)
    correct1, correct5 = int(hits1), int(hits5)
    n = len(split)
    result = {"top1": 100.0 * correct1 / n}
    if logits.shape[1] >= 5:
        result["top5"] = 100.0 * correct5 / n
    return result


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
        eval_batch_size=recipe.get("eval_batch_size", 512),
    )


@dataclass(frozen=True)
class TestSplit:
    """The split runs are evaluated on between epochs, normalised as for the final figure."""

    split: Split
    mean: torch.Tensor
    std: torch.Tensor
    device: torch.device
    amp_dtype: torch.dtype | None = None

    __test__ = False  # not a pytest class, though its name starts with Test


def evaluate_epoch(runs: list[StudentRun], test: TestSplit, *, epoch: int, epochs: int) -> None:
    """Test top-1 of every live run due at this epoch (0-based), into its last history entry.

    A run is due every ``eval_every`` epochs and always after the last one; the full
    result (top-1 and top-5) is kept as ``run.accuracy``. A run whose evaluation fails
    keeps the error, as in training; the others go on.
    """
    for run in runs:
        if run.error is not None or not run.history or run.history[-1]["epoch"] != epoch + 1:
            continue
        if (epoch + 1) % run.eval_every and epoch + 1 != epochs:
            continue
        try:
            run.accuracy = evaluate(
                run.model,
                test.split,
                mean=test.mean,
                std=test.std,
                device=test.device,
                batch_size=run.eval_batch_size,
                amp_dtype=test.amp_dtype,
            )
        except Exception as exc:  # noqa: BLE001 - the run fails, the group goes on
            if run.fail_fast:
                raise
            run.error = exc
            continue
        finally:
            if run.taps is not None:
                run.taps.pop()  # the evaluation's activations are no training step's
        run.history[-1]["test_top1"] = run.accuracy["top1"]


class Progress:
    """Receives training progress; the CLI shows it, tests and workers ignore it."""

    def cell_started(self, label: str, epochs: int) -> None: ...

    def cells_started(self, cell_ids: tuple[str, ...]) -> None:
        """The matrix cells of the unit that just started (after ``cell_started``)."""

    def step(self, step: int, steps: int, loss: float) -> None: ...

    def epoch_entries(self, epoch: int, entries: dict[str, dict[str, Any]]) -> None:
        """Each live run's history entry by run name (its cell id), just before ``epoch_done``."""

    def epoch_done(self, epoch: int, loss: float) -> None: ...

    def cell_done(self, status: str) -> None: ...


def fit(
    stream: BatchStream,
    runs: list[StudentRun],
    *,
    epochs: int,
    teacher: TeacherSource | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: Progress | None = None,
    test: TestSplit | None = None,
    start_epoch: int = 0,
    on_epoch_end: Callable[[int, float], None] | None = None,
) -> float:
    """Train every run from ``start_epoch`` to ``epochs``; returns the wall time in seconds.

    With ``test``, each run is evaluated on it after its due epochs (see
    :func:`evaluate_epoch`); the time counts in the wall time. ``on_epoch_end(epoch,
    seconds)`` is called after each epoch (0-based) with the wall time so far, before
    progress hears of it: where a cell saves its checkpoint.
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
