"""Optimizer and learning-rate schedule factories from a recipe's settings."""

from __future__ import annotations

import torch
from torch import nn


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
