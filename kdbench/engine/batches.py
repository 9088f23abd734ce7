"""How the harness batches and augments a dataset (its types: :mod:`kdbench.core.data`).

Datasets are held in memory as uint8 image tensors (N x C x H x W). That keeps a run
free of DataLoader workers: batches are sliced from a seeded permutation, moved to the
device and augmented there (random crop with padding, horizontal flip), so the same
code is fast on a GPU and exact on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

from kdbench.core.data import Split


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images to normalised float: ``(x / 255 - mean) / std`` per channel."""
    return (images.float().div_(255.0) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


@dataclass(frozen=True)
class Augment:
    """Training augmentation: random crop after zero padding, random horizontal flip.

    The views are those of torchvision's ``RandomCrop(size, padding)`` +
    ``RandomHorizontalFlip()``, but finitely many and numbered: a view id encodes the
    crop offset and the flip, so a batch's augmentation is drawn once (on the CPU, so
    draws do not depend on the device) and applied on the batch's device, and a
    teacher's logits can be cached per view.
    """

    crop_padding: int = 0
    flip: bool = False

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.flip

    @property
    def num_views(self) -> int:
        return (2 * self.crop_padding + 1) ** 2 * (2 if self.flip else 1)

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Random view ids for ``n`` images, uniform over the views."""
        return torch.randint(0, self.num_views, (n,), generator=generator)

    def apply(self, images: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """The given view of each image (views: one id per image)."""
        views = views.to(images.device)
        flips = 2 if self.flip else 1
        offsets, flipped = views // flips, views % flips
        n, _, h, w = images.shape
        out = images
        if self.crop_padding > 0:
            p = self.crop_padding
            dy, dx = offsets // (2 * p + 1), offsets % (2 * p + 1)
            padded = torch.nn.functional.pad(images, (p, p, p, p))
            rows = (dy.view(n, 1) + torch.arange(h, device=images.device)).view(n, 1, h, 1)
            cols = (dx.view(n, 1) + torch.arange(w, device=images.device)).view(n, 1, 1, w)
            batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
            channels = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
            out = padded[batch, channels, rows, cols]
        if self.flip:
            out = torch.where(flipped.view(n, 1, 1, 1).bool(), out.flip(3), out)
        return out


class Batch(NamedTuple):
    """Normalised inputs, labels, dataset indices and augmentation view ids (or None)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    views: torch.Tensor | None


class SeededBatches:
    """Normalised batches of a split drawn from a seeded generator, whose state is the
    stream's position between epochs (the base of the in-memory and streaming paths)."""

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        device: torch.device,
        seed: int,
        channels_last: bool = False,
    ) -> None:
        self.split = split
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.batch_size = batch_size
        self.device = device
        self.mean = mean.to(device)
        self.std = std.to(device)
        self.generator = torch.Generator().manual_seed(seed)
        self._open(seed)

    def _open(self, seed: int) -> None:
        """Where a subclass prepares its source of images (after the fields above)."""

    def __len__(self) -> int:
        return (len(self.split) + self.batch_size - 1) // self.batch_size

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stream's position between epochs: its generator's state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

    def epoch(self) -> Iterator[Batch]:
        """One pass over the split in a fresh random order."""
        raise NotImplementedError

    def epoch_part(self, rank: int, size: int) -> Iterator[tuple[Batch, float]]:
        """One rank's :func:`batch_part` of each batch of :meth:`epoch`, and its share of it.

        Every rank draws the whole epoch (one generator, so the same order and views on
        all ranks) and keeps its slice; a stream that can read only its slice overrides this.
        """
        for batch in self.epoch():
            total = len(batch.labels)
            part = batch_part(total, rank, size)
            if part is not None:
                sliced = Batch(*(None if field is None else field[part] for field in batch))
                yield sliced, (part.stop - part.start) / total


def batch_part(total: int, rank: int, size: int) -> slice | None:
    """Rank ``rank`` of ``size``'s slice of a global batch of ``total`` images.

    Slices are contiguous, in rank order, and differ in size by at most one image (the
    first ``total % size`` ranks take one more, as ``torch.tensor_split``); a batch with
    fewer images than ranks has no slices (a rank with no image cannot take a step).
    """
    if total < size:
        return None
    base, extra = divmod(total, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class BatchStream(SeededBatches):
    """Seeded, shuffled, augmented training batches from an in-memory split.

    One stream feeds every student of a lockstep group (they see identical batches).
    The split stays on the device when it fits there (:func:`fits_on`).
    """

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        augment: Augment,
        mean: torch.Tensor,
        std: torch.Tensor,
        device: torch.device,
        seed: int,
        channels_last: bool = False,
    ) -> None:
        super().__init__(split, batch_size=batch_size, mean=mean, std=std, device=device,
                         seed=seed, channels_last=channels_last)  # fmt: skip
        self.augment = augment
        self.on_device = fits_on(device, split)
        store = device if self.on_device else torch.device("cpu")
        self._images = split.images.to(store)
        self._labels = split.labels.to(store)

    def epoch(self) -> Iterator[Batch]:
        """One pass over the split in a fresh random order."""
        order = torch.randperm(len(self.split), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            views = self.augment.draw(len(index), self.generator) if self.augment.active else None
            index = index.to(self._images.device)
            images = self._images[index].to(self.device)
            labels = self._labels[index].to(self.device)
            if views is not None:
                images = self.augment.apply(images, views)
            inputs = normalize(images, self.mean, self.std).contiguous(
                memory_format=self.memory_format
            )
            yield Batch(inputs, labels, index.to(self.device), views)


def fits_on(device: torch.device, split: Split) -> bool:
    """Whether a split can live on the device: there, batches are cut without copies.

    A GPU keeps it when it takes at most a quarter of the free memory (the rest is for
    models, activations and a logit cache); otherwise it stays in host memory and each
    batch is copied over.
    """
    if device.type != "cuda":
        return True
    size = split.images.nbytes + split.labels.nbytes
    return size <= torch.cuda.mem_get_info(device)[0] // 4


def eval_batches(
    split: Split, *, batch_size: int, mean: torch.Tensor, std: torch.Tensor, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised test batches in dataset order."""
    mean, std = mean.to(device), std.to(device)
    for start in range(0, len(split), batch_size):
        images = split.images[start : start + batch_size].to(device)
        yield normalize(images, mean, std), split.labels[start : start + batch_size].to(device)


def sample_inputs(
    split: Split, count: int, *, mean: torch.Tensor, std: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """The first ``count`` images, normalised: for dry forwards, FLOPs and latency."""
    return normalize(split.images[:count].to(device), mean.to(device), std.to(device))
