"""The measurement protocol's pieces on models whose answers are known."""

from __future__ import annotations

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
    # The file holds every float32 (4 bytes each) plus a container of fixed size: a
    # model 1000 inputs wider is 4 x 1000 x 4 bytes larger, give or take alignment.
    small = serialized_bytes(model)
    assert 44 * 4 < small < 44 * 4 + 4096
    grown = serialized_bytes(nn.Linear(1010, 4)) - small
    assert abs(grown - 1000 * 4 * 4) <= 128


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
    assert result["device"].startswith("cpu")


@pytest.mark.parametrize("threads", [1, 2])
def test_latency_records_the_threads_it_ran_with(threads):
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        result = latency(model, torch.randn(2, 1, 8, 8), warmup=0, iters=1, throughput_batch=2,
                         throughput_iters=1)  # fmt: skip
    finally:
        torch.set_num_threads(saved)
    assert result["threads"] == threads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_latency_on_cuda_is_synchronised():
    model = nn.Conv2d(1, 4, 3).cuda()
    result = latency(model, torch.randn(2, 1, 8, 8, device="cuda"), warmup=2, iters=10,
                     throughput_batch=16, throughput_iters=2)  # fmt: skip
    assert result["synchronized"] is True
