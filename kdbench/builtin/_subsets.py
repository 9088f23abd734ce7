"""Deterministic stratified subsets, so CPU-sized benchmarks can use part of a split.

A subset of ``k`` images keeps the class proportions of the full split: each class gets
``k * count / n`` images rounded by the largest-remainder method (ties go to the lower
class index), and within a class the *first* images in file order are taken. No seed is
involved, so the same ``k`` always selects the same images on every machine. Selected
images keep their original order.
"""

from __future__ import annotations

import torch

from kdbench.core.data import Split
from kdbench.core.errors import ConfigError

__all__ = ["stratified_indices", "subset"]


def stratified_indices(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (ascending) of the first images of each class, ``k`` in all, proportional."""
    n = len(labels)
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    exact = counts.to(torch.float64) * k / n
    quota = exact.floor().to(torch.int64)
    short = k - int(quota.sum())
    if short:
        # Largest remainder first; a stable sort keeps ties in class order.
        order = torch.argsort(exact - quota, descending=True, stable=True)
        quota[order[:short]] += 1
    # Rank of each image among the images of its class, in file order.
    by_class = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[by_class] = torch.arange(n) - starts.repeat_interleave(counts)
    keep = rank < quota[inverse]
    return torch.nonzero(keep).flatten()


def subset(split: Split, k: int | None, *, param: str) -> Split:
    """``split`` cut to a stratified ``k`` images; ``None`` or ``k == len(split)``: unchanged.

    ``param`` names the TOML parameter in error messages.
    """
    if k is None:
        return split
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ConfigError(f"{param} must be a positive number of images, got {k!r}")
    if k > len(split):
        raise ConfigError(f"{param} = {k} is larger than the split ({len(split)} images)")
    if k == len(split):
        return split
    index = stratified_indices(split.labels, k)
    return Split(split.images[index], split.labels[index])
