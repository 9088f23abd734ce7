"""The measurement protocol's pieces on models whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdbench.engine.measure import count_params, flops_per_image, latency, serialized_bytes


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


MEASURE = {
    "latency": True, "warmup": 1, "latency_iters": 9, "throughput_batch": 8,
    "throughput_iters": 3, "flops": True,
}  # fmt: skip


def test_latency_carries_its_spread():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    result = latency(model, torch.randn(2, 1, 8, 8), warmup=1, iters=40, throughput_batch=8,
                     throughput_iters=5)  # fmt: skip
    low, high = result["batch1_p50_ci_ms"]
    assert low <= result["batch1_p50_ms"] <= high and result["batch1_iqr_ms"] >= 0
    assert result["throughput_iqr_img_s"] >= 0 and result["throughput_calls"] == 5


def test_median_interval_uses_binomial_order_statistics():
    import numpy as np

    from kdbench.engine.measure import median_ci

    # n = 20: the 95 % distribution-free interval of the median is [x(6), x(15)]
    xs = np.arange(1.0, 21.0)
    assert median_ci(xs[::-1].copy()) == (6.0, 15.0)


def test_an_architecture_is_measured_once_and_shared(tmp_path, monkeypatch):
    from kdbench.engine import measure

    calls = []
    real = measure.latency
    monkeypatch.setattr(measure, "latency", lambda *a, **k: calls.append(1) or real(*a, **k))
    spec = {"name": "mlp", "params": {"hidden": 4}}
    refs = []
    for seed in range(3):  # three methods' students: same network, other weights
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
        refs.append(
            measure.architecture_cost(
                model,
                torch.randn(2, 1, 8, 8),
                MEASURE,
                spec=spec,
                num_classes=4,
                channels_last=False,
                results=tmp_path,
            )  # fmt: skip
        )
    assert len(calls) == 1 and len({r["key"] for r in refs}) == 1
    (path,) = (tmp_path / "costs").glob("*.json")
    assert refs[0]["file"] == f"costs/{path.name}"
    other = measure.architecture_cost(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), torch.randn(2, 1, 8, 8), MEASURE,
        spec={"name": "mlp", "params": {"hidden": 8}}, num_classes=4, channels_last=False,
        results=tmp_path,
    )  # fmt: skip
    assert other["key"] != refs[0]["key"] and len(calls) == 2


def test_reports_show_one_cost_per_student_and_flag_per_cell_records(tmp_path):
    import json

    from kdbench.records.costs import FORMAT, architecture_costs

    folder = tmp_path / "run"
    (folder / "costs").mkdir(parents=True)
    cost = {"format": FORMAT, "key": "k1", "latency": {"batch1_p50_ms": 0.2, "device": "cpu"},
            "size": {"params": 10}}  # fmt: skip
    (folder / "costs" / "k1.json").write_text(json.dumps(cost))
    ref = {"student": {"key": "k1", "file": "costs/k1.json"}}
    new = [({"arch_cost": ref}, folder / "records" / f"{i}.json") for i in range(3)]
    (only,) = architecture_costs(new)
    assert only.p50_ms == 0.2 and only.params == 10 and not only.per_cell
    old = [({"latency": {"batch1_p50_ms": v, "device": "cpu"}, "size": {"params": 10}}, None)
           for v in (0.1, 0.3, 0.2, 0.9)]  # fmt: skip
    (legacy,) = architecture_costs(old)
    assert legacy.per_cell and legacy.measurements == 4
    assert legacy.p50_ms == 0.25 and legacy.p50_iqr_ms == pytest.approx(0.45 - 0.175)


def test_a_missing_cost_file_is_said_not_shown_as_a_measurement(tmp_path):
    from kdbench.records.costs import architecture_costs
    from kdbench.reporting.formats import cost_text

    ref = {"student": {"key": "gone", "file": "costs/gone.json"}}
    (cost,) = architecture_costs([({"arch_cost": ref}, tmp_path / "records" / "a.json")])
    assert cost.missing and "costs/gone.json is missing" in cost_text(cost)
