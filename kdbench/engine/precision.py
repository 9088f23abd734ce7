"""Precision, layout and compilation policy: autocast dtype, channels-last, torch.compile.

Kept apart from the loop so the logit cache, the teacher, the students and their
records agree on one reading of the recipe's ``amp``, ``channels_last`` and ``compile``
switches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from itertools import chain

import torch
from torch import nn
from torch.nn.parameter import is_lazy


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 (or fp16) autocast on CUDA; none on CPU, where it rarely pays."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def channels_last_applies(model: nn.Module) -> bool:
    """Whether the channels-last layout reaches ``model``: it has 4-D tensors (convolutions).

    Only 4-D tensors have that layout, so on any other model (an MLP) the recipe's
    ``channels_last`` is a no-op, and the record says it did not apply.
    """
    tensors = chain(model.parameters(), model.buffers())
    return any(t.dim() == 4 for t in tensors if not is_lazy(t))


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D tensors in the channels-last layout (unchanged without any).

    Call it once lazy layers are materialised: an uninitialised parameter has no layout.
    """
    if channels_last_applies(model):
        model.to(memory_format=torch.channels_last)
    return model


def memory_format(model: nn.Module) -> str:
    """The layout ``model``'s convolutions run in, read from its weights, for records.

    ``channels_last`` when a 4-D weight is stored so and not also contiguous (a weight
    with one input channel is both, and then both layouts compute the same way).
    """
    weights = [p for p in model.parameters() if not is_lazy(p) and p.dim() == 4]
    last = torch.channels_last
    if any(p.is_contiguous(memory_format=last) and not p.is_contiguous() for p in weights):
        return "channels_last"
    return "contiguous"


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
