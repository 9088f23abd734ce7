"""Cells trained in lockstep (one teacher forward per batch) equal cells trained alone."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import cell_jobs, write_benchmark
from kdbench.engine.batches import Batch
from kdbench.engine.cell import run_cell, run_group
from kdbench.engine.lockstep import lockstep_key
from kdbench.engine.online_teacher import OnlineTeacher
from kdbench.engine.teachers import load_teacher

LOSSES = """
[losses.kd]
[losses.soft_ce]
[losses.fitnets]
weight = 1.0
[losses.dkd]
warmup = 1
"""


# Two losses that draw random numbers at every step (CRD's negatives): a student that
# did not get its own random state back would shift the other's draws.
RANDOM_LOSSES = """
[losses.crd]
negatives = 64
[losses.crd_wide]
loss = "crd"
negatives = 96
feature_dim = 32
"""


def planned_jobs(folder, losses: str):
    bench = write_benchmark(folder)
    text = bench.read_text().replace("[losses.kd]\ntemperature = 4.0", losses)
    text = text.replace('student = "mlp"\nstudent_params = { hidden = 16 }',
                        'student = "cnn"\nstudent_params = { width = 4 }')  # fmt: skip
    bench.write_text(text.replace("seeds = [0, 1]", "seeds = [3]"))
    return cell_jobs(bench, folder)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return planned_jobs(tmp_path_factory.mktemp("lockstep"), LOSSES)


def test_group_records_equal_one_by_one_records(setup):
    context, jobs = setup
    groups = defaultdict(list)
    for job in jobs:
        groups[lockstep_key(job.cell)].append(job)
    [group] = [g for g in groups.values() if len(g) > 1]
    assert {job.cell.loss.label for job in group} == {"kd", "soft_ce", "fitnets", "dkd"}

    together = run_group(group, context)
    alone = [run_cell(job, context) for job in group]
    for a, b in zip(together, alone, strict=True):
        assert a["status"] == b["status"] == "ok", (a.get("error"), b.get("error"))
        assert a["cell_id"] == b["cell_id"]
        assert a["metrics"] == b["metrics"]  # exact: same batches, same random numbers
        assert a["history"] == b["history"]
        assert a["size"] == b["size"]
        assert a["cost"]["lockstep_group"] == 4 and b["cost"]["lockstep_group"] == 1
    # the students really differ from each other (the test is not comparing one run)
    assert len({r["metrics"]["final_train_loss"]["total"] for r in together}) == 4


def test_a_failing_student_does_not_stop_its_group(setup):
    context, jobs = setup
    group = [job for job in jobs if job.cell.teacher is not None]
    broken = group[0].cell
    recipe = {**broken.recipe, "optimizer": {**broken.recipe["optimizer"], "lr": 1e9}}

    group[0] = replace(group[0], cell=replace(broken, recipe=recipe))
    records = run_group(group, context)
    assert records[0]["status"] == "failed"
    assert "loss is" in records[0]["error"]["message"]
    assert all(r["status"] == "ok" for r in records[1:])


def test_groups_agree_on_what_students_share_and_only_that(setup):
    """Stream and teacher settings split groups; a student's own optimizer does not."""
    _, jobs = setup
    cell = next(job.cell for job in jobs if job.cell.teacher is not None)

    def changed(**recipe):
        return lockstep_key(replace(cell, recipe={**cell.recipe, **recipe}))

    shared = [
        {"channels_last": True},
        {"compile": "default"},
        {"logit_cache": "off"},
        {"amp": "off"},
        {"batch_size": 7},
        {"augment": {"crop_padding": 1}},
    ]
    for setting in shared:
        assert changed(**setting) != lockstep_key(cell), setting
    own_lr = {**cell.recipe["optimizer"], "lr": cell.recipe["optimizer"]["lr"] / 2}
    assert changed(optimizer=own_lr) == lockstep_key(cell)


def test_students_drawing_random_numbers_in_lockstep_equal_one_by_one(tmp_path):
    context, jobs = planned_jobs(tmp_path, RANDOM_LOSSES)
    group = [job for job in jobs if job.cell.teacher is not None]
    assert [job.cell.loss.label for job in group] == ["crd", "crd_wide"]
    assert len({lockstep_key(job.cell) for job in group}) == 1

    together = run_group(group, context)
    alone = [run_cell(job, context) for job in group]
    for a, b in zip(together, alone, strict=True):
        assert a["status"] == b["status"] == "ok", (a.get("error"), b.get("error"))
        assert a["metrics"] == b["metrics"]  # exact: each student keeps its own draws
        assert a["history"] == b["history"]
    assert together[0]["metrics"] != together[1]["metrics"]


def test_the_teacher_is_frozen_while_students_train(setup, monkeypatch):
    context, jobs = setup
    group = [job for job in jobs if job.cell.teacher is not None]
    loaded = []

    def spy(*args, **kwargs):
        loaded.append(load_teacher(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr("kdbench.engine.teacher_setup.load_teacher", spy)
    records = run_group(group, context)
    assert all(r["status"] == "ok" for r in records)
    (teacher,) = loaded
    before = load_teacher(
        group[0].cell.teacher, context, context.dataset(group[0].cell.dataset)[0],
        Path(group[0].teacher_weights), torch.device("cpu"),
    )  # fmt: skip
    params = list(teacher.parameters())
    assert params and not any(p.requires_grad for p in params)
    assert all(p.grad is None for p in params)
    assert not teacher.training
    # Folding changes the layout, not the function: the same logits as a fresh copy.
    inputs = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(teacher(inputs), before.eval()(inputs), atol=1e-5)


def test_online_teacher_builds_no_graph_even_for_a_trainable_model():
    model = torch.nn.Linear(3, 2)  # requires_grad on purpose: no_grad must do the work
    batch = Batch(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), torch.arange(4), None)
    logits, features = OnlineTeacher(model, None, None)(batch)
    assert logits.grad_fn is None and not logits.requires_grad
    assert features == {}
