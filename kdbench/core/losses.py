"""The distillation-loss API: what a loss receives and how it is written.

A loss is an ``nn.Module`` subclass of :class:`DistillationLoss`. Its keyword-only
constructor parameters are its TOML parameters; its ``forward`` gets one
:class:`LossInputs` and returns the total loss or a dict of named terms (summed for the
backward pass, logged separately in the record). Values worth watching that are not
part of the loss (a learnable temperature, one term's share) are reported with
:meth:`DistillationLoss.log`: averaged per epoch into the record's history, never
summed or backpropagated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LossInputs:
    """Everything a published method needs for one training step.

    ``teacher_logits`` is ``None`` for losses that declare ``needs_teacher = False``.
    ``indices`` are the dataset indices of the batch (CRD's memory bank uses them).
    ``epoch`` counts from 0 up to ``epochs - 1`` (for warm-up schedules).
    """

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    targets: torch.Tensor
    indices: torch.Tensor
    epoch: int
    epochs: int
    student_features: Mapping[str, torch.Tensor] = field(default_factory=dict)
    teacher_features: Mapping[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class TapPair:
    """A student tap distilled towards a teacher tap, named separately.

    Networks of different depth share tap names that mean different places (``stage2``
    of three stages is the middle, of two the end); a pair says which is which.
    ``LossInputs.student_features`` is keyed by ``student``, ``teacher_features`` by
    ``teacher``; so are the shapes in :class:`LossContext`.
    """

    student: str
    teacher: str

    def __str__(self) -> str:
        return self.student if self.student == self.teacher else f"{self.student}<-{self.teacher}"


class Taps(tuple):
    """The tap names both networks declare, with each network's own list beside them.

    A tuple of the shared names (what :meth:`DistillationLoss.required_features` always
    received), plus ``student`` and ``teacher``: every tap each network declares, in order.
    """

    student: tuple[str, ...]
    teacher: tuple[str, ...]

    def __new__(cls, student: Sequence[str], teacher: Sequence[str]) -> Taps:
        shared = super().__new__(cls, [name for name in student if name in teacher])
        shared.student, shared.teacher = tuple(student), tuple(teacher)
        return shared


def feature_pairs(
    loss: DistillationLoss, student: Sequence[str], teacher: Sequence[str]
) -> tuple[TapPair, ...]:
    """What ``loss`` asks of networks declaring these taps, every request as a pair."""
    requested = loss.required_features(Taps(student, teacher))
    return tuple(item if isinstance(item, TapPair) else TapPair(item, item) for item in requested)


@dataclass(frozen=True)
class LossContext:
    """What a loss may need to build its own parameters, given once before training.

    Feature shapes are per image (no batch dimension), for the taps the loss asked for.
    ``train_labels`` are the labels of the training split, indexed like
    :attr:`LossInputs.indices` (CRD draws its negatives from other classes with them);
    ``None`` where the caller does not know them.
    """

    num_classes: int
    num_train: int
    student_feature_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    teacher_feature_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    train_labels: torch.Tensor | None = None


class DistillationLoss(nn.Module):
    """Base class of every loss kdbench trains with.

    Class attributes a subclass may set:

    - ``needs_teacher``: ``False`` for losses that use labels only; the harness then
      runs no teacher forward at all.
    - ``features``: names of the feature taps the loss needs from both networks
      (e.g. ``("stage2",)``); override :meth:`required_features` when the choice
      depends on constructor parameters or on which taps the two models declare, or
      to pair taps of different names (:class:`TapPair`).

    A loss that owns parameters (a regressor, embeddings) creates them in
    :meth:`setup` (or in ``__init__``); they are trained with the student and reported
    as extra parameters.

    ``forward`` may call :meth:`log` to report diagnostics: scalars kept apart from the
    loss terms (detached, never summed into the loss), averaged per epoch into the
    history's ``diagnostics`` and sent to trackers as ``diag/<name>``.
    """

    needs_teacher: bool = True
    features: tuple[str, ...] = ()

    def required_features(self, available: Sequence[str]) -> tuple[str | TapPair, ...]:
        """Taps to collect: a name (the same tap of both networks) or a :class:`TapPair`.

        ``available`` are the names both networks declare; when the harness calls this,
        it is a :class:`Taps`, whose ``student`` and ``teacher`` list each network's own
        (to pair the last stage of a 2-stage student with that of a 3-stage teacher).
        Zoo models name their taps ``stage1`` .. ``stageN`` (each stage's output),
        ``stageK_pre`` (its pre-activation) and ``pool`` (the flattened embedding).
        """
        return tuple(self.features)

    def setup(self, context: LossContext) -> None:
        """Build parameters that depend on the models or data; default: nothing."""

    def forward(self, inputs: LossInputs) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError

    def log(self, name: str, value: float | torch.Tensor) -> None:
        """Report a diagnostic of this step: a scalar to watch, not part of the loss.

        Kept detached (no gradient flows through it); a name logged twice in one step
        keeps the last value. The harness averages each name over the epoch's steps.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a diagnostic's name must be a non-empty str, got {name!r}")
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise TypeError(
                    f"diagnostic '{name}' must be a scalar, got a tensor of shape "
                    f"{tuple(value.shape)}"
                )
            value = value.detach().reshape(()).float()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
        else:
            raise TypeError(
                f"diagnostic '{name}' must be a float or a one-element tensor, "
                f"got {type(value).__name__}"
            )
        self.__dict__.setdefault("_diagnostics", {})[name] = value

    def pop_diagnostics(self) -> dict[str, float | torch.Tensor]:
        """What :meth:`log` received since the last call (which it clears).

        The training loop calls it after each step; a loss's tests may too.
        """
        return self.__dict__.pop("_diagnostics", {})


class CrossEntropy(DistillationLoss):
    """No distillation: cross-entropy on the labels (the student baseline)."""

    needs_teacher = False

    def __init__(self) -> None:
        super().__init__()

    def forward(self, inputs: LossInputs):
        return {"ce": F.cross_entropy(inputs.student_logits, inputs.targets)}


def loss_terms(output: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A loss's output as named terms: a bare tensor becomes ``{"loss": tensor}``."""
    if isinstance(output, torch.Tensor):
        return {"loss": output}
    if not output:
        raise ValueError("a loss returned an empty dict of terms")
    return dict(output)
