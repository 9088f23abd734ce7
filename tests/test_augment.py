"""Batched crop/flip on tensors draws exactly the views torchvision's transforms make."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF

from kdbench.engine.batches import Augment


def torchvision_views(image: torch.Tensor, padding: int) -> set[bytes]:
    """Every view RandomCrop(size, padding) + RandomHorizontalFlip can produce."""
    h, w = image.shape[1:]
    padded = TF.pad(image, [padding])
    views = set()
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = TF.crop(padded, top, left, h, w)
            views.add(crop.numpy().tobytes())
            views.add(TF.horizontal_flip(crop).numpy().tobytes())
    return views


def test_crop_flip_views_are_exactly_torchvisions():
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(1, 255, (1, 6, 5), dtype=torch.uint8, generator=generator)
    expected = torchvision_views(image, padding=2)
    assert len(expected) == 5 * 5 * 2
    batch = image.unsqueeze(0).repeat(2000, 1, 1, 1)
    augment = Augment(crop_padding=2, flip=True)
    assert augment.num_views == 50
    out = augment.apply(batch, augment.draw(len(batch), generator))
    seen = {view.numpy().tobytes() for view in out}
    assert seen == expected  # every draw is a real view, and all 50 views occur


def test_no_padding_and_no_flip_is_identity():
    images = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    out = Augment().apply(images, torch.zeros(4, dtype=torch.long))
    assert torch.equal(out, images)
