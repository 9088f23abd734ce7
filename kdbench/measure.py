"""Where latency, throughput, size and FLOPs are measured (the measurement protocol).

Latency follows MLPerf's SingleStream idea: batch 1, one query at a time, percentiles
over many calls after warm-up. Throughput follows Offline: a large batch, images per
second. Both run in eval and inference mode; on CUDA every timed call is synchronised.
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOPS_UNIT = "FLOPs per image (torch.utils.flop_counter: 2 per multiply-add)"


def count_params(module: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def serialized_bytes(model: nn.Module) -> int:
    """Size of the model's ``state_dict`` as ``torch.save`` writes it."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def flops_per_image(model: nn.Module, sample: torch.Tensor) -> int:
    """Forward FLOPs for one image (``sample`` is a batch of one)."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(sample[:1])
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_calls(model: nn.Module, batch: torch.Tensor, warmup: int, iters: int) -> np.ndarray:
    device = batch.device
    with torch.inference_mode():
        for _ in range(warmup):
            model(batch)
        _sync(device)
        times = np.empty(iters)
        for i in range(iters):
            started = time.perf_counter()
            model(batch)
            _sync(device)
            times[i] = time.perf_counter() - started
    return times


def latency(
    model: nn.Module,
    sample: torch.Tensor,
    *,
    warmup: int,
    iters: int,
    throughput_batch: int,
    throughput_iters: int,
) -> dict[str, float | int | str]:
    """Batch-1 latency percentiles (ms) and large-batch throughput (images/s)."""
    model.eval()
    device = sample.device
    single = _timed_calls(model, sample[:1], warmup, iters) * 1e3
    repeats = -(-throughput_batch // len(sample))
    big = sample.repeat(repeats, 1, 1, 1)[:throughput_batch]
    batched = _timed_calls(model, big, max(1, warmup // 5), throughput_iters)
    return {
        "batch1_p50_ms": float(np.percentile(single, 50)),
        "batch1_p90_ms": float(np.percentile(single, 90)),
        "batch1_p99_ms": float(np.percentile(single, 99)),
        "batch1_calls": iters,
        "warmup_calls": warmup,
        "throughput_batch": throughput_batch,
        "throughput_img_s": float(throughput_batch / np.median(batched)),
        "device": device_name(device),
        "dtype": str(sample.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "memory_format": "contiguous",
        "compile": "none",
        "synchronized": device.type == "cuda",
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"
