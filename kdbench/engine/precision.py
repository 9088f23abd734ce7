"""Precision and compilation policy: which autocast dtype, whether torch.compile.

Kept apart from the loop so the logit cache, the teacher and the students agree on
one reading of the recipe's ``amp`` and ``compile`` switches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
