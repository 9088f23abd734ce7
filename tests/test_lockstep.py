"""Cells trained in lockstep (one teacher forward per batch) equal cells trained alone."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest

from conftest import cell_jobs, write_benchmark
from kdbench.cell import lockstep_key, run_cell, run_group

LOSSES = """
[losses.kd]
[losses.soft_ce]
[losses.fitnets]
weight = 1.0
[losses.dkd]
warmup = 1
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lockstep")
    bench = write_benchmark(folder)
    text = bench.read_text().replace("[losses.kd]\ntemperature = 4.0", LOSSES)
    text = text.replace('student = "mlp"\nstudent_params = { hidden = 16 }',
                        'student = "cnn"\nstudent_params = { width = 4 }')  # fmt: skip
    bench.write_text(text.replace("seeds = [0, 1]", "seeds = [3]"))
    return cell_jobs(bench, folder)


def test_group_records_equal_one_by_one_records(setup):
    context, jobs = setup
    groups = defaultdict(list)
    for job in jobs:
        groups[lockstep_key(job.cell)].append(job)
    [group] = [g for g in groups.values() if len(g) > 1]
    assert {job.cell.loss.label for job in group} == {"kd", "soft_ce", "fitnets", "dkd"}

    together = run_group(group, context)
    alone = [run_cell(job, context) for job in group]
    for a, b in zip(together, alone):
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
