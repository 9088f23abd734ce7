"""Batches from image files on disk: the streaming twin of the in-memory ``BatchStream``.

A :class:`kdbench.StreamingDataset` is read by DataLoader workers: each reads a file,
decodes it (``torchvision.io``) and cuts its view with torchvision's v2 transforms; the
training process moves the uint8 batch to the device and normalises it there. With
``gpu_decode`` and a CUDA device (where torchvision decodes JPEGs with nvjpeg), workers
only read the bytes and the batch is decoded and cut on the GPU instead.

Reproducible by construction: the stream's own ``torch.Generator`` draws each epoch's
order and one seed per sample, and a sample's view is drawn from its seed alone. So a
run's batches depend on the seed only, not on the number of workers, on which worker
got which sample, or on the students' random numbers (one stream feeds a lockstep
group). The stream resumes at an epoch boundary: its state is its generator's. On
several devices every rank draws the same order and seeds and its workers read and
decode only the files of its slice of each global batch (:meth:`LoaderStream.epoch_part`).

:func:`training_stream`, :func:`evaluation_batches` and :func:`sample_inputs` take either
kind of split and pick the path from its type.

A file that cannot be trained on (gone, empty, not an image, truncated, or whose header
claims more than ``max_pixels`` pixels: read before decoding, so a decompression bomb
is never allocated) fails the cell with one line naming it, a
:class:`kdbench.core.image_files.ImageFileError`: the worker hands the error back with
the batch and the training process raises it, so no worker traceback is printed. The
dataset's own check (``imagefolder``'s, at validate) finds such files before a run.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from functools import cache

import torch
from torch.utils.data import DataLoader, Dataset

from kdbench.core.data import Split
from kdbench.core.image_check import decoder_message
from kdbench.core.image_files import ImageFileError, ImageFiles, ImageViews
from kdbench.core.image_header import pixel_problem, read_header
from kdbench.engine import batches as in_memory
from kdbench.engine.batches import (
    Augment,
    Batch,
    BatchStream,
    SeededBatches,
    batch_part,
    normalize,
)

__all__ = [
    "LoaderStream",
    "evaluation_batches",
    "sample_inputs",
    "training_stream",
    "view_transform",
]

NO_LOGIT_CACHE = "off: streaming augmentation (random resized crops) has no finite view set"


def view_transform(views: ImageViews, *, train: bool):
    """torchvision's v2 transform of a uint8 image to its training or evaluation view."""
    from torchvision.transforms import v2

    if train:
        return v2.Compose(
            [
                v2.RandomResizedCrop(views.image_size, scale=views.scale, antialias=True),
                v2.RandomHorizontalFlip(),
            ]
        )
    return v2.Compose([v2.Resize(views.resize, antialias=True), v2.CenterCrop(views.image_size)])


def _view(transform, image: torch.Tensor, seed: int) -> torch.Tensor:
    """The transform's view of one image, its random draws taken from ``seed`` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torchvision 0.29 deprecates its image codecs for TorchCodec's; they still decode
    JPEGs (on the GPU too), and the warning would come from every file of every worker."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The image decoding", category=DeprecationWarning)
        yield


def _decode(encoded: torch.Tensor) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    return decode_image(encoded, mode=ImageReadMode.RGB)


@cache
def gpu_decode_available() -> bool:
    """Whether this torchvision decodes batches of JPEGs on CUDA (nvjpeg)."""
    if not torch.cuda.is_available():
        return False
    import torchvision.io  # noqa: F401 - registers the image ops

    return hasattr(torch.ops.image, "decode_jpegs_cuda")


class _Files(Dataset):
    """Samples keyed ``(index, seed)``: the uint8 view, or the file's bytes when not decoding."""

    def __init__(self, split: ImageFiles, *, train: bool, decode: bool) -> None:
        self.split = split
        self.decode = decode
        self.transform = view_transform(split.views, train=train)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        path = self.split.path(index)
        label = int(self.split.labels[index])
        try:
            payload = _read(path, self.split.views.max_pixels)
            if self.decode:
                with _quiet():
                    payload = _view(self.transform, _decode_named(payload, path), seed)
        except ImageFileError as exc:  # handed back, not raised: see _collate
            return exc, label, index, seed
        return payload, label, index, seed


def _read(path, max_pixels: int) -> torch.Tensor:
    """The file's bytes, once its header names an image of at most ``max_pixels`` pixels."""
    try:
        data = path.read_bytes()
        header = read_header(data)  # over bytes, not a bytearray: BytesIO shares, no copy
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ImageFileError(f"{path}: {reason}; remove or replace the file") from None
    too_big = pixel_problem(header, max_pixels)
    if too_big:
        raise ImageFileError(f"{path}: {too_big}; not decoded")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)  # writable: no warning


def _checked(batches: Iterator) -> Iterator:
    """The loader's batches; a file that could not be read ends the pass with its line."""
    for batch in batches:
        if isinstance(batch, ImageFileError):
            raise batch
        yield batch


def _collate(items: list) -> tuple | ImageFileError:
    """A batch; or, when a file could not be read, its error, which the training process
    raises as one line (raised in a worker it would arrive wrapped in a worker traceback)."""
    payloads, labels, indices, seeds = zip(*items, strict=True)
    for payload in payloads:
        if isinstance(payload, ImageFileError):
            return payload
    decoded = payloads[0].ndim == 3
    return (
        torch.stack(payloads) if decoded else list(payloads),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(indices, dtype=torch.int64),
        torch.tensor(seeds, dtype=torch.int64),
    )


class LoaderStream(SeededBatches):
    """Seeded, shuffled, augmented training batches read from image files by workers.

    Same interface as :class:`~kdbench.engine.batches.BatchStream`; batches carry ``views=None``
    (continuous augmentation: no view ids, no logit cache).
    """

    on_device = False  # images are read from disk for every batch
    augment = None  # views are drawn by the transforms, not numbered (no logit cache)

    split: ImageFiles

    def _open(self, seed: int) -> None:
        self.gpu_decode = (
            self.split.views.gpu_decode and self.device.type == "cuda" and gpu_decode_available()
        )
        self.files = _Files(self.split, train=True, decode=not self.gpu_decode)
        # this epoch's batches of (index, seed) keys, in order: this rank's part of each
        self._batches: list[list[tuple[int, int]]] = []
        self._loader = _loader(self.files, self._batches, self.device, seed, keep=True)

    def epoch(self) -> Iterator[Batch]:
        """One pass over the files in a fresh random order, each in a fresh random view."""
        for batch, _ in self.epoch_part(0, 1):
            yield batch

    def epoch_part(self, rank: int, size: int) -> Iterator[tuple[Batch, float]]:
        """This rank's slice of each global batch, reading and decoding only its files.

        Every rank draws the whole epoch's order and per-sample seeds from the same
        generator, so the ranks' slices together are exactly the one-process batch.
        """
        n = len(self.split)
        order = torch.randperm(n, generator=self.generator)
        seeds = torch.randint(0, 2**62, (n,), generator=self.generator)
        keys = list(zip(order.tolist(), seeds.tolist(), strict=True))
        shares = []
        self._batches.clear()
        for start in range(0, n, self.batch_size):
            total = min(self.batch_size, n - start)
            part = batch_part(total, rank, size)
            if part is not None:
                self._batches.append(keys[start + part.start : start + part.stop])
                shares.append((part.stop - part.start) / total)
        for (payload, labels, indices, batch_seeds), share in zip(
            _checked(self._loader), shares, strict=True
        ):
            images = self._images(payload, batch_seeds, indices)
            inputs = normalize(images, self.mean, self.std).contiguous(
                memory_format=self.memory_format
            )
            yield Batch(inputs, labels.to(self.device), indices.to(self.device), None), share

    def _images(self, payload, seeds: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        if not isinstance(payload, list):
            return payload.to(self.device, non_blocking=True)
        paths = [self.split.path(i) for i in indices.tolist()]
        images = _decode_on_gpu(payload, paths, self.device)
        views = zip(images, seeds.tolist(), strict=True)
        return torch.stack([_view(self.files.transform, image, seed) for image, seed in views])


def _decode_on_gpu(encoded: list[torch.Tensor], paths: list, device: torch.device) -> list:
    """A batch of files decoded on the GPU; files nvjpeg refuses (PNG, CMYK) on the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with _quiet():
        try:
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            return [
                _decode_named(e, path).to(device) for e, path in zip(encoded, paths, strict=True)
            ]


def _decode_named(encoded: torch.Tensor, path) -> torch.Tensor:
    """The decoded image; a file the decoder refuses is one line naming it."""
    try:
        return _decode(encoded)
    except RuntimeError as exc:
        raise ImageFileError(f"{path}: cannot be decoded: {decoder_message(exc)}") from None


def _loader(
    files: _Files, batches: list, device: torch.device, seed: int, *, keep: bool = False
) -> DataLoader:
    """Batches of ``files`` at ``batches`` (lists of keys); ``keep`` keeps the workers."""
    workers = files.split.views.workers
    return DataLoader(
        files,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        persistent_workers=keep and workers > 0,
        # seeds the workers' own generators; the views do not depend on them
        generator=torch.Generator().manual_seed(seed),
    )


def training_stream(
    split: Split | ImageFiles,
    *,
    batch_size: int,
    augment: Augment,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
    seed: int,
    channels_last: bool = False,
) -> BatchStream | LoaderStream:
    """The stream for a split's kind; image files bring their own augmentation."""
    common = dict(batch_size=batch_size, mean=mean, std=std, device=device, seed=seed,
                  channels_last=channels_last)  # fmt: skip
    if isinstance(split, ImageFiles):
        return LoaderStream(split, **common)
    return BatchStream(split, augment=augment, **common)


def evaluation_batches(
    split: Split | ImageFiles,
    *,
    batch_size: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised test batches in split order (evaluation views for image files)."""
    if not isinstance(split, ImageFiles):
        yield from in_memory.eval_batches(
            split, batch_size=batch_size, mean=mean, std=std, device=device
        )
        return
    files = _Files(split, train=False, decode=True)
    keys = [(index, 0) for index in range(len(split))]
    batches = [keys[start : start + batch_size] for start in range(0, len(keys), batch_size)]
    mean, std = mean.to(device), std.to(device)
    for images, labels, _, _ in _checked(_loader(files, batches, device, 0)):
        yield normalize(images.to(device), mean, std), labels.to(device)


def sample_inputs(
    split: Split | ImageFiles,
    count: int,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """The first ``count`` images, normalised: for dry forwards, FLOPs and latency."""
    if not isinstance(split, ImageFiles):
        return in_memory.sample_inputs(split, count, mean=mean, std=std, device=device)
    files = _Files(split, train=False, decode=True)
    first = _collate([files[(index, 0)] for index in range(min(count, len(split)))])
    images, _, _, _ = next(_checked(iter([first])))
    return normalize(images.to(device), mean.to(device), std.to(device))
