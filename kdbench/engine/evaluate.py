"""Test-split evaluation: top-1/top-5 of a model, and of every live run after an epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from kdbench.core.data import Split
from kdbench.core.image_files import ImageFiles
from kdbench.engine.precision import autocast
from kdbench.engine.streaming import evaluation_batches

if TYPE_CHECKING:
    from kdbench.engine.training import StudentRun

# ``eval_batch_size = "auto"``: the fastest evaluation batch per device type. On a CPU
# small batches are faster (resnet8x4 on 10,000 CIFAR images: 64 takes 0.42x the time
# of 512 and 0.75x that of 128, results/perf/eval_cost_cpu.txt); a GPU wants large ones.
AUTO_EVAL_BATCH = {"cpu": 64}
GPU_EVAL_BATCH = 512


def eval_batch_size(setting: int | str, device: torch.device) -> int:
    """The batch size an evaluation runs at: the recipe's, or the device's for ``"auto"``.

    Only speed depends on it: records are the same at every size (tests/test_eval_batch.py).
    """
    if setting == "auto":
        return AUTO_EVAL_BATCH.get(device.type, GPU_EVAL_BATCH)
    return int(setting)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    split: Split | ImageFiles,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
    batch_size: int | str = "auto",
    amp_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) on a split; top-5 only with at least 5 classes.

    Runs in eval mode and puts the model back in the mode it was in, so it can be
    called between training epochs; it draws no random numbers.
    """
    was_training = model.training
    batch_size = eval_batch_size(batch_size, device)
    model.eval()
    hits1 = hits5 = torch.zeros((), dtype=torch.long, device=device)
    for inputs, targets in evaluation_batches(
        split, batch_size=batch_size, mean=mean, std=std, device=device
    ):
        with autocast(device, amp_dtype):
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


@dataclass(frozen=True)
class TestSplit:
    """The split runs are evaluated on between epochs, normalised as for the final figure."""

    split: Split | ImageFiles
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
        # the size it ran at, for the record
        run.eval_batch_size = eval_batch_size(run.eval_batch_size, test.device)
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
