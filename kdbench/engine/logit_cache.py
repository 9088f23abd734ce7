"""The exact teacher-logit cache: every augmented view's logits, computed once.

When training augmentation has finitely many views (none, or crop-with-padding and
flip: ``(2p+1)^2 x 2`` views per image), the teacher's logits for every (image, view)
can be computed once and looked up by every logit-only loss and every seed, instead
of running the teacher at every step. The lookup is exact: a batch's view ids name the
very views the stream applied. Logits are stored in float16 on CUDA (memory) and in
float32 on the CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.core.data import Split
from kdbench.engine.batches import Augment, Batch, normalize


def worth_caching(augment: Augment, epochs: int) -> bool:
    """The cache costs ``views`` teacher passes; training without it costs ``epochs``
    (of every cell the cache can serve)."""
    return augment.num_views <= epochs


@torch.no_grad()
def build_logit_cache(
    teacher: nn.Module,
    split: Split,
    augment: Augment,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
    batch_size: int = 1024,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Logits of shape ``(N, views, classes)`` for every training image and view."""
    teacher.eval()
    mean, std = mean.to(device), std.to(device)
    store = torch.float16 if device.type == "cuda" else torch.float32
    cache = None
    for start in range(0, len(split), batch_size):
        images = split.images[start : start + batch_size].to(device)
        for view in range(augment.num_views):
            views = torch.full((len(images),), view, dtype=torch.long)
            inputs = normalize(augment.apply(images, views), mean, std)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = teacher(inputs).float()
            if cache is None:
                cache = torch.empty(len(split), augment.num_views, logits.shape[1], dtype=store,
                                    device=device)  # fmt: skip
            cache[start : start + len(images), view] = logits.to(store)
    return cache


class CachedTeacher:
    """Answers a batch with its cached logits (no features: logit-only losses)."""

    def __init__(self, cache: torch.Tensor) -> None:
        self.cache = cache

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        views = batch.views.to(self.cache.device) if batch.views is not None else 0
        return self.cache[batch.indices, views].float(), {}
