"""The body of a trained cell's record: accuracy, size and inference cost.

Measured after the last epoch; a cell with results to keep references its networks'
shared cost files instead of timing each cell again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdbench.core.data import DatasetSplits
from kdbench.core.losses import TapPair
from kdbench.engine.job import CellJob
from kdbench.engine.measure import (
    FLOPS_UNIT,
    architecture_cost,
    count_params,
    flops_per_image,
    protocol_latency,
    serialized_bytes,
)
from kdbench.engine.precision import channels_last_applies
from kdbench.engine.training import StudentRun

ACCURACY_PROTOCOL = (
    "top1/top5: last epoch, test split; best_top1: the highest test top-1 over the "
    "evaluated epochs (every eval_every epochs and the last), selected on the test split"
)

TRIAL_ACCURACY_PROTOCOL = (
    "val_top1/val_top5: last epoch, validation split (held out of the training split); "
    "the test split is not evaluated in a trial"
)
# A trial's metrics in validation terms: what selection reads.
_VALIDATION_NAMES = {"top1": "val_top1", "top5": "val_top5", "best_top1": "best_val_top1",
                     "best_epoch": "best_val_epoch"}  # fmt: skip


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


def finish_record(
    job: CellJob,
    run: StudentRun,
    features: tuple[TapPair, ...],
    data: DatasetSplits,
    sample: torch.Tensor,
    shared: dict[str, Any],
) -> dict[str, Any]:
    """Measure a trained student, evaluated after its last epoch: the body of its record."""
    cell = job.cell
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
        **_inference_cost(job, run.model, sample, data.num_classes, shared),
        "cost": cost,
        "dataset": shared["dataset"],
        "protocol": {
            "accuracy": ACCURACY_PROTOCOL,
            "eval_every": cell.recipe["eval_every"],
            "eval_batch_size": run.eval_batch_size,
            "amp": shared["amp"],
            "features": [str(pair) for pair in features],
            "lockstep_group": shared["group_size"],
            "logit_cache": shared["logit_cache"],
            **({"logit_store": use} if (use := shared.get("logit_store")) else {}),
            **({"logit_store_entries": n} if (n := shared.get("logit_store_entries")) else {}),
            **({"logit_cache_note": note} if (note := shared["logit_cache_note"]) else {}),
            # what applied: a no-op on a model without 4-D tensors
            "channels_last": cell.recipe["channels_last"] and channels_last_applies(run.model),
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
    refs = {"student": cost_ref(job, student, sample, num_classes, "student")}
    if shared["teacher_cost"] is not None:
        refs["teacher"] = shared["teacher_cost"]
    return {"arch_cost": refs}


def cost_ref(job: CellJob, model, sample, num_classes: int, role: str) -> dict[str, str] | None:
    """The network's cost file (measured once per architecture and device, as loaded)."""
    if job.outputs is None:
        return None
    config = job.cell.config()
    student = role == "student"
    return architecture_cost(
        model, sample, job.cell.measure, num_classes=num_classes,
        spec=config["student"] if student else config["teacher"]["model"],
        channels_last=job.cell.recipe["channels_last"] and student and channels_last_applies(model),
        results=Path(job.outputs.out_dir),
    )  # fmt: skip


def as_trial(body: dict[str, Any]) -> dict[str, Any]:
    """A trial's record body: its evaluations were on the validation split, so they say so.

    Accuracy in ``metrics`` and ``history`` becomes ``val_*``; no test figure is left.
    """
    metrics = body.get("metrics") or {}
    body["metrics"] = {_VALIDATION_NAMES.get(k, k): v for k, v in metrics.items()}
    for entry in body.get("history", []):
        entry["val_top1"] = entry.pop("test_top1", None)
    if "protocol" in body:
        body["protocol"]["accuracy"] = TRIAL_ACCURACY_PROTOCOL
    return body


def pruned_body(run: StudentRun) -> dict[str, Any]:
    """The record body of a trial its study pruned: its history, last validation top-1."""
    scored = [entry for entry in run.history if entry["test_top1"] is not None]
    metrics: dict[str, Any] = {"pruned_after_epoch": len(run.history)}
    if scored:
        metrics["top1"] = scored[-1]["test_top1"]
    if run.history:
        metrics["final_train_loss"] = run.history[-1]["train"]
    return {"status": "pruned", "metrics": metrics, "history": run.history,
            "cost": {"steps": run.steps, "epoch_seconds": run.epoch_seconds}}  # fmt: skip
