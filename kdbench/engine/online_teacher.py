"""The frozen teacher as a source of logits and features, one forward per batch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kdbench.engine.batches import Batch
from kdbench.engine.features import FeatureTaps
from kdbench.engine.precision import autocast

TeacherSource = Callable[[Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]


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
        with torch.no_grad(), autocast(batch.inputs.device, self.amp_dtype):
            logits = self.forward(batch.inputs).float()
        return logits, self.taps.pop() if self.taps else {}
