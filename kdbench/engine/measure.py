"""Where latency, throughput, size and FLOPs are measured (the measurement protocol).

Latency follows MLPerf's SingleStream idea: batch 1, one query at a time, percentiles
over many calls after warm-up. Throughput follows Offline: a large batch, images per
second. Both run in eval and inference mode; on CUDA every timed call is synchronised.
"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from kdbench.engine.precision import memory_format
from kdbench.records.costs import arch_key, cost_file, read_cost, write_cost

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


def median_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the median: order statistics from the binomial.

    Timings are skewed (rare long calls), so no normal approximation is assumed.
    """
    from scipy import stats

    xs = np.sort(values)
    n = len(xs)
    low = int(stats.binom.ppf((1 - confidence) / 2, n, 0.5))
    high = int(stats.binom.ppf((1 + confidence) / 2, n, 0.5))
    return float(xs[max(low - 1, 0)]), float(xs[min(high, n - 1)])


def latency(
    model: nn.Module,
    sample: torch.Tensor,
    *,
    warmup: int,
    iters: int,
    throughput_batch: int,
    throughput_iters: int,
) -> dict[str, float | int | str]:
    """Batch-1 latency percentiles (ms) and large-batch throughput (images/s), each with
    its spread: interquartile range and a 95 % interval of the median over the calls."""
    model.eval()
    device = sample.device
    single = _timed_calls(model, sample[:1], warmup, iters) * 1e3
    repeats = -(-throughput_batch // len(sample))
    big = sample.repeat(repeats, 1, 1, 1)[:throughput_batch]
    rates = throughput_batch / _timed_calls(model, big, max(1, warmup // 5), throughput_iters)
    p25, p50, p75, p90, p99 = np.percentile(single, [25, 50, 75, 90, 99])
    r25, r50, r75 = np.percentile(rates, [25, 50, 75])
    p50_ci, rate_ci = median_ci(single), median_ci(rates)
    return {
        "batch1_p50_ms": float(p50),
        "batch1_p90_ms": float(p90),
        "batch1_p99_ms": float(p99),
        "batch1_iqr_ms": float(p75 - p25),
        "batch1_p50_ci_ms": list(p50_ci),
        "batch1_calls": iters,
        "warmup_calls": warmup,
        "throughput_batch": throughput_batch,
        "throughput_img_s": float(r50),
        "throughput_iqr_img_s": float(r75 - r25),
        "throughput_ci_img_s": list(rate_ci),
        "throughput_calls": throughput_iters,
        "device": device_name(device),
        "dtype": str(sample.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "memory_format": memory_format(model),  # as the weights are stored
        "compile": "none",
        "synchronized": device.type == "cuda",
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"


def protocol_latency(
    model: nn.Module, sample: torch.Tensor, measure: dict[str, Any]
) -> dict[str, Any] | None:
    """:func:`latency` with the benchmark's ``[measure]`` knobs; None when it is off."""
    if not measure["latency"]:
        return None
    return latency(
        model,
        sample,
        warmup=measure["warmup"],
        iters=measure["latency_iters"],
        throughput_batch=measure["throughput_batch"],
        throughput_iters=measure["throughput_iters"],
    )


def architecture_cost(
    model: nn.Module,
    sample: torch.Tensor,
    measure: dict[str, Any],
    *,
    spec: dict[str, Any],
    num_classes: int,
    channels_last: bool,
    results: Path,
) -> dict[str, str]:
    """A record's reference to its architecture's cost file, measured only when absent.

    Latency, throughput, parameters, bytes and FLOPs depend on the network and the
    device, not on the loss it was trained with: one measurement serves every method.
    """
    setting = {
        "input": list(sample.shape[1:]),
        "num_classes": num_classes,
        "device": device_name(sample.device),
        "dtype": str(sample.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "channels_last": channels_last,
        "protocol": measure,
    }
    key = arch_key(spec, setting)
    path = cost_file(results, key)
    if read_cost(path) is None:
        size = {"params": count_params(model), "serialized_bytes": serialized_bytes(model)}
        if measure["flops"]:
            size["flops_per_image"] = flops_per_image(model, sample)
            size["flops_unit"] = FLOPS_UNIT
        timing = protocol_latency(model, sample, measure)
        write_cost(
            path,
            {
                "key": key,
                "model": spec,
                "setting": setting,
                "size": size,
                "latency": timing,
                "measured_at": datetime.now(UTC).isoformat(),
            },
        )
    return {"key": key, "file": f"{path.parent.name}/{path.name}"}
