"""Loss diagnostics: values a loss reports with ``self.log`` are averaged per epoch into the
history and sent to trackers, never summed into the loss nor backpropagated."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_history import FIT_RECIPE, _bench, _digits_split, _stream

from kdbench import DistillationLoss, LossInputs
from kdbench.builtin.losses_logit import DKD
from kdbench.builtin.models_small import cnn
from kdbench.core.plugins import load_plugins
from kdbench.core.registry import Entry
from kdbench.engine.cell import run_cell, run_group
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.runner import plan, provision_teachers
from kdbench.engine.trackers import epoch_metrics
from kdbench.engine.training import Diagnostics, fit, make_run
from kdbench.records.schema import Record, dump
from kdbench.testing import check_loss


class TemperedCE(DistillationLoss):
    """Cross-entropy on logits over a learnable temperature; optionally reports it."""

    needs_teacher = False

    def __init__(self, *, watch: bool = True) -> None:
        super().__init__()
        self.temperature = torch.nn.Parameter(torch.tensor(2.0))
        self.watch = watch
        self.steps = 0

    def forward(self, inputs: LossInputs):
        self.steps += 1
        if self.watch:
            self.log("temperature", self.temperature)  # a parameter: it must come out detached
            self.log("step", self.steps)  # 1, 2, 3, 4 in epoch 1 (4 batches of 32)
            if self.steps % 2 == 0:
                self.log("even_step", float(self.steps))  # averaged over its own steps
        return {"ce": F.cross_entropy(inputs.student_logits / self.temperature, inputs.targets)}


def _train(loss: DistillationLoss, epochs: int = 2):
    torch.manual_seed(0)
    model = cnn(10, 1, width=4)
    run = make_run(model, loss, FIT_RECIPE, amp_dtype=None)
    fit(_stream(_digits_split()), [run], epochs=epochs)
    assert run.error is None, run.error
    return run


def test_diagnostics_are_epoch_means_and_leave_the_loss_and_the_weights_untouched():
    watched, plain = _train(TemperedCE(watch=True)), _train(TemperedCE(watch=False))
    first, second = (e["diagnostics"] for e in watched.history)
    assert first["step"] == pytest.approx(2.5) and second["step"] == pytest.approx(6.5)
    assert first["even_step"] == pytest.approx(3.0) and second["even_step"] == pytest.approx(7.0)
    assert 0 < first["temperature"] != second["temperature"]  # it learns; its mean is logged
    assert all("diagnostics" not in e for e in plain.history)
    # not a term, not in the total, no gradient through it: training is bit-identical
    assert [e["train"] for e in watched.history] == [e["train"] for e in plain.history]
    assert set(watched.history[0]["train"]) == {"ce", "total"}
    for (name, a), b in zip(
        watched.model.state_dict().items(), plain.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.equal(watched.loss.temperature, plain.loss.temperature)


def test_a_lockstep_group_records_each_loss_diagnostics_and_trackers_get_them(tmp_path):
    bench = _bench(tmp_path, "[losses.dkd]\nwarmup = 1\n[losses.kd]")
    context = RunContext()
    cells = [c for c in plan(bench, context).cells if c.teacher is not None]
    teachers = provision_teachers(cells, context, tmp_path, torch.device("cpu"))
    jobs = [
        CellJob(cell=c, device="cpu", teacher_weights=teachers[c.teacher.id]["weights"])
        for c in cells
    ]
    records = {r["config"]["loss"]["label"]: r for r in run_group(jobs, context)}
    assert set(records) == {"dkd", "kd"}
    for record in records.values():
        assert record["status"] == "ok", record.get("error")
        assert record["cost"]["lockstep_group"] == 2
        assert dump(Record.model_validate(record))["history"] == record["history"]
    assert all("diagnostics" not in e for e in records["kd"]["history"])
    dkd = records["dkd"]["history"]
    shares = [e["diagnostics"]["tckd_share"] for e in dkd]
    assert len(shares) == 4 and all(0 < s < 1 for s in shares)
    assert set(dkd[0]["train"]) == {"ce", "tckd", "nckd", "total"}
    assert epoch_metrics(dkd[0])["diag/tckd_share"] == shares[0]


def test_dkd_reports_its_target_class_share_of_the_distillation():
    terms = check_loss(DKD, {"warmup": 1})
    loss = DKD(warmup=1)
    inputs = LossInputs(
        student_logits=torch.randn(8, 10, generator=torch.Generator().manual_seed(1)),
        teacher_logits=torch.randn(8, 10, generator=torch.Generator().manual_seed(2)),
        targets=torch.arange(8) % 10,
        indices=torch.arange(8),
        epoch=0,
        epochs=2,
    )
    out = loss(inputs)
    [(name, share)] = loss.pop_diagnostics().items()
    assert name == "tckd_share" and not share.requires_grad
    assert float(share) == pytest.approx(float(out["tckd"] / (out["tckd"] + out["nckd"])))
    assert set(terms) == {"ce", "tckd", "nckd"}
    assert loss.pop_diagnostics() == {}  # popped: the next step starts empty


def test_log_takes_only_scalars_with_a_name():
    loss = TemperedCE()
    with pytest.raises(TypeError, match="shape"):
        loss.log("logits", torch.zeros(2, 3))
    with pytest.raises(TypeError, match="float or a one-element tensor"):
        loss.log("label", "cat")
    with pytest.raises(TypeError, match="non-empty str"):
        loss.log("", 1.0)
    loss.log("x", torch.tensor([3.0], requires_grad=True))
    loss.log("x", 4)  # the last value of a step counts
    assert loss.pop_diagnostics() == {"x": 4.0}


class _Logs(DistillationLoss):
    needs_teacher = False

    def __init__(self, *, name: str = "ce", value: float = math.nan) -> None:
        super().__init__()
        self.name, self.value = name, value

    def forward(self, inputs: LossInputs):
        self.log(self.name, self.value)
        return {"ce": F.cross_entropy(inputs.student_logits, inputs.targets)}


def test_check_loss_refuses_a_diagnostic_named_like_a_term_or_not_finite():
    with pytest.raises(AssertionError, match="under the name of one of its terms"):
        check_loss(_Logs, {"name": "ce", "value": 1.0})
    with pytest.raises(AssertionError, match="diagnostic 'spread' is nan"):
        check_loss(_Logs, {"name": "spread"})
    assert set(check_loss(_Logs, {"name": "spread", "value": 0.5})) == {"ce"}


def test_epoch_metrics_send_finite_diagnostics_only():
    entry = {"epoch": 1, "lr": 0.1, "test_top1": None, "train": {"total": 1.5},
             "diagnostics": {"t": 2.0, "share": None}}  # fmt: skip
    assert epoch_metrics(entry) == {"lr": 0.1, "train/total": 1.5, "diag/t": 2.0}


def test_a_history_entry_whose_diagnostic_was_not_finite_keeps_it_as_null():
    watched = Diagnostics()
    watched.add({"share": torch.tensor(0.25), "ratio": 1.0})
    watched.add({"share": torch.tensor(math.nan)})
    assert watched.means() == {"share": None, "ratio": 1.0}


def test_a_parameter_made_in_init_is_trained_and_counted_as_extra(tmp_path):
    plugins = load_plugins()
    plugins.registry.add(Entry("losses", "tempered_ce", TemperedCE, "tests", "test loss"))
    context = RunContext(plugins=plugins)
    bench = _bench(tmp_path, "[losses.tempered_ce]")
    [cell] = [c for c in plan(bench, context).cells if c.loss.label == "tempered_ce"]
    record = run_cell(CellJob(cell=cell, device="cpu"), context)
    assert record["status"] == "ok", record.get("error")
    assert record["size"]["extra_params"] == 1  # the temperature, made in __init__
    temperatures = [e["diagnostics"]["temperature"] for e in record["history"]]
    assert len(temperatures) == 4 and len(set(temperatures)) == 4  # trained: it moves
    assert set(record["history"][0]["train"]) == {"ce", "total"}
