"""The measurement protocol's pieces on models whose answers are known."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from kdbench.measure import count_params, flops_per_image, latency, serialized_bytes


def test_flops_count_two_per_multiply_add():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5, bias=False))
    assert flops_per_image(model, torch.randn(3, 1, 3, 4)) == 2 * 12 * 5


def test_conv_flops_match_the_formula():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # 8 output channels x 16x16 positions x (3 x 3 x 3) multiply-adds x 2
    assert flops_per_image(conv, torch.randn(2, 3, 16, 16)) == 2 * 8 * 16 * 16 * 27


def test_params_and_serialized_size():
    model = nn.Linear(10, 4)
    assert count_params(model) == 44
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert serialized_bytes(model) == len(buffer.getvalue()) > 44 * 4


def test_extra_params_count_only_trainable():
    module = nn.Linear(3, 3)
    module.bias.requires_grad_(False)
    assert count_params(module, trainable_only=True) == 9


def test_latency_reports_ordered_percentiles_and_throughput():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    result = latency(
        model, torch.randn(2, 1, 8, 8), warmup=2, iters=50, throughput_batch=64,
        throughput_iters=3,
    )  # fmt: skip
    assert 0 < result["batch1_p50_ms"] <= result["batch1_p90_ms"] <= result["batch1_p99_ms"]
    assert result["throughput_img_s"] > 0
    assert result["batch1_calls"] == 50 and result["throughput_batch"] == 64
    assert result["threads"] == torch.get_num_threads()
    assert result["device"].startswith("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_latency_on_cuda_is_synchronised():
    model = nn.Conv2d(1, 4, 3).cuda()
    result = latency(model, torch.randn(2, 1, 8, 8, device="cuda"), warmup=2, iters=10,
                     throughput_batch=16, throughput_iters=2)  # fmt: skip
    assert result["synchronized"] is True
