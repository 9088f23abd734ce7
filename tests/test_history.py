"""Per-epoch history: learning rate and test top-1 each epoch, best epoch, eval_every."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from sklearn.datasets import load_digits

from conftest import TINY, write_benchmark
from kdbench.builtin.losses_basic import CrossEntropy
from kdbench.builtin.models_small import cnn
from kdbench.core.config import load_config
from kdbench.core.data import Split
from kdbench.core.errors import ConfigError
from kdbench.engine.batches import Augment, BatchStream
from kdbench.engine.cell import run_cell, run_group
from kdbench.engine.cell_record import best_epoch
from kdbench.engine.context import RunContext
from kdbench.engine.evaluate import TestSplit
from kdbench.engine.job import CellJob
from kdbench.engine.lockstep import lockstep_key
from kdbench.engine.runner import plan, provision_teachers
from kdbench.engine.training import fit, make_run

# 4 epochs, lr 0.05 dropping x0.1 after epochs 2 and 3: 0.05, 0.05, 0.005, 0.0005
RECIPE = """[recipe]
epochs = 4
batch_size = 128
optimizer = { name = "sgd", lr = 0.05 }
schedule = { name = "multistep", milestones = [2, 3], gamma = 0.1 }
"""
SCHEDULE = [0.05, 0.05, 0.005, 0.0005]


def _bench(tmp_path, losses: str = "[losses.kd]\ntemperature = 4.0"):
    text = TINY.format(extra_pairs="").replace("seeds = [0, 1]", "seeds = [0]")
    text = text.replace('student = "mlp"\nstudent_params = { hidden = 16 }',
                        'student = "cnn"\nstudent_params = { width = 4 }')  # fmt: skip
    head, _, rest = text.partition("[recipe]")
    text = head + RECIPE + "\n[teacher_recipe]" + rest.partition("[teacher_recipe]")[2]
    return write_benchmark(tmp_path, text=text.replace("[losses.kd]\ntemperature = 4.0", losses))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The ce cell of the 4-epoch multistep benchmark, and its context."""
    bench = _bench(tmp_path_factory.mktemp("history"))
    context = RunContext()
    [cell] = [c for c in plan(bench, context).cells if c.loss.label == "ce"]
    return context, cell


def _with(cell, **recipe):
    return replace(cell, recipe={**cell.recipe, **recipe})


def test_history_has_lr_and_test_top1_every_epoch_and_best_epoch_in_metrics(baseline):
    context, cell = baseline
    record = run_cell(CellJob(cell=cell, device="cpu"), context)
    assert record["status"] == "ok", record.get("error")
    history, metrics = record["history"], record["metrics"]
    assert [set(e) for e in history] == [{"epoch", "lr", "test_top1", "train"}] * 4
    assert [e["epoch"] for e in history] == [1, 2, 3, 4]
    assert [e["lr"] for e in history] == pytest.approx(SCHEDULE)
    assert all(0.0 <= e["test_top1"] <= 100.0 for e in history)
    assert history[-1]["test_top1"] == metrics["top1"]
    assert metrics["final_train_loss"] == history[-1]["train"]
    assert "total" in history[0]["train"]
    top = max(e["test_top1"] for e in history)
    assert metrics["best_top1"] == top
    assert history[metrics["best_epoch"] - 1]["test_top1"] == top
    assert metrics["best_top1"] >= metrics["top1"]
    assert "selected on the test split" in record["protocol"]["accuracy"]
    assert record["protocol"]["eval_every"] == 1
    seconds = record["cost"]["epoch_seconds"]
    assert len(seconds) == 4 and all(t > 0 for t in seconds)
    assert sum(seconds) <= record["cost"]["train_seconds"] * (1 + 1e-9)


def test_eval_every_thins_evaluation_and_leaves_training_unchanged(baseline):
    context, cell = baseline
    every = run_cell(CellJob(cell=_with(cell, eval_every=1), device="cpu"), context)
    third = run_cell(CellJob(cell=_with(cell, eval_every=3), device="cpu"), context)
    last = run_cell(CellJob(cell=_with(cell, eval_every=1000), device="cpu"), context)
    assert [e["test_top1"] is None for e in third["history"]] == [True, True, False, False]
    assert [e["test_top1"] is None for e in last["history"]] == [True, True, True, False]
    for record in (third, last):
        assert [e["train"] for e in record["history"]] == [e["train"] for e in every["history"]]
        assert [e["lr"] for e in record["history"]] == [e["lr"] for e in every["history"]]
        for key in ("top1", "top5", "final_train_loss"):
            assert record["metrics"][key] == every["metrics"][key]
        evaluated = [e for e in record["history"] if e["test_top1"] is not None]
        for entry in evaluated:  # the same epoch gives the same accuracy however often
            assert entry["test_top1"] == every["history"][entry["epoch"] - 1]["test_top1"]
    assert last["metrics"]["best_epoch"] == 4
    assert last["metrics"]["best_top1"] == last["metrics"]["top1"]


# For fit() driven directly: 128 digits as uint8 images, a constant-lr SGD recipe.
FIT_RECIPE = {
    "epochs": 3,
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                  "nesterov": False},
    "schedule": {"name": "constant"},
}  # fmt: skip
MEAN, STD = torch.full((1,), 0.3), torch.full((1,), 0.4)
CPU = torch.device("cpu")


def _digits_split() -> Split:
    x, y = load_digits(return_X_y=True)
    images = torch.tensor(x[:128] * 15, dtype=torch.uint8).view(-1, 1, 8, 8)
    return Split(images, torch.tensor(y[:128]))


def _stream(split: Split) -> BatchStream:
    return BatchStream(split, batch_size=32, augment=Augment(crop_padding=1), mean=MEAN, std=STD,
                       device=CPU, seed=0)  # fmt: skip


def test_evaluating_between_epochs_changes_no_weight_or_batchnorm_statistic():
    """Evaluation draws no random numbers and leaves BatchNorm statistics alone."""
    split = _digits_split()

    def train(test: TestSplit | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = cnn(10, 1, width=4)
        run = make_run(model, CrossEntropy(), FIT_RECIPE, amp_dtype=None)
        fit(_stream(split), [run], epochs=3, test=test)
        assert model.training  # evaluation put it back in training mode
        assert len(run.history) == 3
        return model.state_dict()

    plain = train(None)
    evaluated = train(TestSplit(split, MEAN, STD, CPU))
    assert any("running_mean" in k for k in plain)
    assert plain.keys() == evaluated.keys()
    for key in plain:
        assert torch.equal(plain[key], evaluated[key]), key


class _FailsInEval(torch.nn.Module):
    """Trains like a linear model; its evaluation raises, as running out of memory would."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            raise RuntimeError("out of memory while evaluating")
        return self.fc(x.flatten(1))


def test_a_student_whose_evaluation_fails_fails_alone():
    split = _digits_split()
    torch.manual_seed(0)
    bad = make_run(_FailsInEval(), CrossEntropy(), FIT_RECIPE, amp_dtype=None)
    good = make_run(cnn(10, 1, width=4), CrossEntropy(), FIT_RECIPE, amp_dtype=None)
    fit(_stream(split), [bad, good], epochs=2, test=TestSplit(split, MEAN, STD, CPU))
    assert isinstance(bad.error, RuntimeError)
    assert [e["test_top1"] for e in bad.history] == [None]  # failed in epoch 1's evaluation
    assert good.error is None
    assert [e["test_top1"] is not None for e in good.history] == [True, True]


def test_best_epoch_is_the_first_highest_evaluated_epoch():
    history = [
        {"epoch": 1, "lr": 0.1, "test_top1": 50.0, "train": {}},
        {"epoch": 2, "lr": 0.1, "test_top1": None, "train": {}},
        {"epoch": 3, "lr": 0.1, "test_top1": 61.0, "train": {}},
        {"epoch": 4, "lr": 0.1, "test_top1": 61.0, "train": {}},
        {"epoch": 5, "lr": 0.1, "test_top1": 60.0, "train": {}},
    ]
    assert best_epoch(history) == (61.0, 3)
    assert best_epoch([{**e, "test_top1": None} for e in history]) is None


def test_each_student_of_a_lockstep_group_keeps_its_own_history(tmp_path):
    bench = _bench(tmp_path, "[losses.kd]\n[losses.soft_ce]")
    context = RunContext()
    cells = [c for c in plan(bench, context).cells if c.teacher is not None]
    teachers = provision_teachers(cells, context, tmp_path, torch.device("cpu"))
    jobs = [
        CellJob(cell=_with(c, eval_every=every), device="cpu",
                teacher_weights=teachers[c.teacher.id]["weights"])
        for c, every in zip(cells, (1, 2), strict=True)
    ]  # fmt: skip
    assert len({lockstep_key(j.cell) for j in jobs}) == 1  # eval_every does not split a group
    together = run_group(jobs, context)
    for record in together:
        assert record["status"] == "ok", record.get("error")
        assert record["cost"]["lockstep_group"] == 2
        assert record["history"][-1]["test_top1"] == record["metrics"]["top1"]
    first, second = (r["history"] for r in together)
    assert all(e["test_top1"] is not None for e in first)
    assert [e["test_top1"] is None for e in second] == [True, False, True, False]
    assert [e["train"] for e in first] != [e["train"] for e in second]
    alone = [run_cell(job, context) for job in jobs]
    assert [r["history"] for r in alone] == [r["history"] for r in together]


@pytest.mark.parametrize("value", [0, -1])
def test_eval_every_below_one_is_a_config_error(tmp_path, value):
    bench = _bench(tmp_path)
    bench.write_text(
        bench.read_text().replace("epochs = 4\n", f"epochs = 4\neval_every = {value}\n")
    )
    with pytest.raises(ConfigError, match=r"recipe\.eval_every.*greater than or equal to 1"):
        load_config(bench, RunContext().plugins.registry)
