"""scikit-learn's handwritten digits: 1,797 8x8 grey images shipped inside its wheel.

The embedded default dataset: always available offline, small enough that a whole KD
matrix trains in about a minute on two CPU cores.
"""

from __future__ import annotations

import torch

from kdbench import DatasetSplits, Fraction, NonNegativeInt, Split, hookimpl

__all__ = ["digits"]


def digits(*, test_fraction: Fraction = 0.25, split_seed: NonNegativeInt = 0) -> DatasetSplits:
    """scikit-learn digits (8x8 grey, 10 classes) with a fixed stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # Pixel values are 0..16; scale them to the uint8 range every dataset uses.
    images = torch.from_numpy(bunch.images * (255.0 / 16.0)).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=test_fraction,
        stratify=labels.numpy(),
        random_state=split_seed,
    )
    train = Split(images[train_idx], labels[train_idx])
    pixels = train.images.float() / 255.0
    return DatasetSplits(
        train=train,
        test=Split(images[test_idx], labels[test_idx]),
        classes=tuple(str(c) for c in range(10)),
        mean=(pixels.mean().item(),),
        std=(pixels.std().item(),),
    )


@hookimpl
def register_datasets(register):
    register("digits", digits)
