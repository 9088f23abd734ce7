"""The tuning protocol end to end on digits: search spaces in the file, a validation
split carved from the training split, trials as cells, selection on validation accuracy
only, final runs of the selected settings, resume and status."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
from click.testing import CliRunner
from test_cli_run import record_mtimes, run_cli
from test_config_errors import run_bad
from test_resume_kill import start, wait_for_first_record

from conftest import TINY, write_benchmark
from kdbench.cli import cli
from kdbench.core.config import load_config
from kdbench.core.data import Split
from kdbench.core.search_space import Dimension
from kdbench.engine import studies
from kdbench.engine.context import RunContext
from kdbench.engine.runner import plan, run_benchmark
from kdbench.engine.tuning import grid_points
from kdbench.engine.validation_split import carve, held_out
from kdbench.records.identity import experiment_id

# Two methods (the baseline and kd) of one pair, one seed; trials train one epoch.
TUNED = (
    TINY.format(extra_pairs="").replace("seeds = [0, 1]", "seeds = [0]")
    + """
[tune]
trials = 3
trial_epochs = 1
sampler = "random"
batch = 2
seed = 3

[tune.search]
"recipe.optimizer.lr" = { log_uniform = [0.01, 0.1] }

[losses.kd.search]
temperature = { choice = [1.0, 4.0, 8.0] }
"""
)

TRIAL_KEYS = {"study", "trial", "params", "validation", "sampler", "trials", "trial_epochs"}
FINAL_KEYS = {"study", "trials", "trial_epochs", "validation", "sampler", "selected",
              "selected_val_top1"}  # fmt: skip


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


def by_phase(out: Path, phase: str) -> list[dict]:
    return [r for r in records(out) if r["config"].get("phase") == phase]


# --- the benchmark file: search spaces and [tune] -----------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TUNED.replace("temperature = { choice", "temperature = { chioce"),
            ["losses.kd.search.temperature.chioce", "unknown search kind 'chioce'",
             "did you mean 'choice'"],
        ),
        (
            TUNED.replace("temperature = { choice", "temprature = { choice"),
            ["losses.kd.search.temprature", "unknown parameter 'temprature'",
             "did you mean 'temperature'"],
        ),
        (
            TUNED.replace('"recipe.optimizer.lr"', '"recipe.optimizer.lrr"'),
            ['tune.search."recipe.optimizer.lrr"', "unknown recipe key 'lrr'",
             "did you mean 'lr'"],
        ),
        (
            TUNED.replace("[1.0, 4.0, 8.0]", "[1.0, 2.0]"),
            ["losses.kd.search.temperature", "published value 4.0 is not in",
             "always one of the trials"],
        ),
        (
            TUNED.replace("[1.0, 4.0, 8.0]", '["hot", 4.0]'),
            ["losses.kd.search.temperature", "valid number", "'hot'"],
        ),
        (
            TUNED.replace("[0.01, 0.1]", "[0.1, 0.01]"),
            ['tune.search."recipe.optimizer.lr".log_uniform', "low must be below high"],
        ),
        (
            TUNED.replace('sampler = "random"', 'sampler = "grid"'),
            ['tune.search."recipe.optimizer.lr"', "sampler 'grid' searches grid and choice"],
        ),
        (
            TUNED.replace("trials = 3", "trails = 3"),
            ["tune.trails", "did you mean 'trials'"],
        ),
        (
            TUNED.replace("validation", "x").replace("[tune]", "[tune]\nvalidation = 1.5"),
            ["tune.validation", "less than 1"],
        ),
        (
            TUNED.replace('student_params = { hidden = 16 }',
                          'student_params = { hidden = 16 }\nsearch.kdd = { alpha = '
                          '{ uniform = [0.1, 0.9] } }'),
            ["pairs[0].search.kdd", "no loss 'kdd'", "did you mean 'kd'"],
        ),
        (
            TINY.format(extra_pairs="") + "[losses.kd.search]\ntemperature = { grid = [4.0] }\n",
            ["losses.kd.search", "add a [tune] table"],
        ),
    ],
)  # fmt: skip
def test_a_mistake_in_tuning_is_one_line_naming_file_and_key(tmp_path, text, expected):
    code, output, out = run_bad(tmp_path, text)
    assert code == 2, output
    line = output.strip()
    assert "\n" not in line and "Traceback" not in output
    assert line.startswith("kdbench: error: ") and "bench.toml" in line
    for part in expected:
        assert part in line
    assert not out.exists()


def test_validate_says_the_methods_are_tuned_first(tmp_path: Path):
    bench = write_benchmark(tmp_path, text=TUNED)
    result = CliRunner().invoke(cli, ["validate", str(bench)])
    assert result.exit_code == 0, result.output
    assert "ok (2 cells; each method tuned first: up to 3 trials on 10% of the training split)" in (
        result.output
    )


def test_a_pairs_search_overrides_the_losss_key_by_key(tmp_path: Path):
    text = TUNED.replace(
        "student_params = { hidden = 16 }",
        "student_params = { hidden = 16 }\nsearch.kd = { temperature = { grid = [2.0, 4.0] } }",
    )
    config = load_config(write_benchmark(tmp_path, text=text), RunContext().plugins.registry)
    pair = config.pairs[0]
    assert config.search_table("kd", pair) == {
        "recipe.optimizer.lr": {"log_uniform": [0.01, 0.1]},
        "temperature": {"grid": [2.0, 4.0]},
    }
    assert config.search_table("kd")["temperature"] == {"choice": [1.0, 4.0, 8.0]}
    assert config.search_table("ce", pair) == {"recipe.optimizer.lr": {"log_uniform": [0.01, 0.1]}}
    assert "search" not in config.loss_params("kd", pair)  # a space, not a parameter


def test_grid_points_start_with_the_published_setting():
    space = {"a": Dimension("grid", (1, 2, 4)), "b": Dimension("choice", ("x", "y"))}
    points = grid_points(space, {"a": 2, "b": "y"}, seed=0)
    assert points[0] == {"a": 2, "b": "y"}
    assert len(points) == 6 and len({tuple(sorted(p.items())) for p in points}) == 6
    assert grid_points(space, {"a": 2, "b": "y"}, seed=0) == points  # seeded


# --- the validation split -----------------------------------------------------------------


def test_validation_split_is_stratified_seeded_and_disjoint():
    labels = torch.arange(10).repeat_interleave(torch.arange(10, 20))  # classes of 10..19
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    data = replace_train(labels, images)
    carved = carve(data, 0.2, seed=5)
    val, rest = carved.data.test, carved.data.train
    assert len(val) + len(rest) == len(labels)
    for c in range(10):  # each class gives a fifth of its images
        assert int((val.labels == c).sum()) == round(0.2 * (10 + c))
    # each image holds its own index: validation and the rest split the indices exactly
    val_ids, rest_ids = set(val.images[:, 0, 0, 0].tolist()), set(rest.images[:, 0, 0, 0].tolist())
    assert val_ids.isdisjoint(rest_ids) and val_ids | rest_ids == set(range(len(labels)))
    assert val_ids == set(held_out(labels, 0.2, 5).tolist())
    assert carve(data, 0.2, seed=5).index_hash == carved.index_hash
    assert carve(data, 0.2, seed=6).index_hash != carved.index_hash
    assert data.test is not val  # the test split is no part of it


def replace_train(labels: torch.Tensor, images: torch.Tensor):
    from kdbench.core.data import DatasetSplits

    split = Split(images.contiguous(), labels)
    return DatasetSplits(split, split, tuple(str(c) for c in range(10)), (0.5,), (0.5,))


def test_trial_ids_ignore_bookkeeping_and_ordinary_ids_have_no_tune_keys():
    loss = {"name": "kd", "label": "kd", "params": {}}
    base = {"benchmark": "b", "dataset": {"name": "d", "params": {}}, "seed": 0, "loss": loss,
            "recipe": {"epochs": 1}}  # fmt: skip
    validation = {"fraction": 0.1, "seed": 0, "index_hash": "abc"}
    trial = base | {"phase": "trial", "tune": {"study": "s", "trial": 3, "params": {},
                                                "validation": validation, "trials": 8}}  # fmt: skip
    renamed = trial | {"tune": {**trial["tune"], "study": "t", "trial": 7, "trials": 16}}
    assert experiment_id(trial) == experiment_id(renamed)
    other_split = trial | {"tune": {**trial["tune"], "validation": {**validation, "seed": 1}}}
    assert experiment_id(trial) != experiment_id(other_split)
    assert experiment_id(trial) != experiment_id(base)
    final = base | {"phase": "final", "tune": {"selected": {}, "selected_val_top1": 50.0}}
    rescored = final | {"tune": {"selected": {}, "selected_val_top1": 60.0}}
    assert experiment_id(final) == experiment_id(rescored) != experiment_id(base)


# --- end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tuned")
    bench = write_benchmark(folder, text=TUNED)
    result = run_cli("run", str(bench), "--out", "out", "--quiet", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def test_trials_are_cells_scored_on_validation_only(tuned_run: Path):
    out = tuned_run / "out"
    trials = by_phase(out, "trial")
    assert len(trials) == 6  # equal budgets: 3 trials for each method, the baseline too
    studies = {r["config"]["tune"]["study"] for r in trials}
    assert len(studies) == 2
    for record in trials:
        tune = record["config"]["tune"]
        assert set(tune) >= TRIAL_KEYS
        assert tune["trials"] == 3 and tune["trial_epochs"] == 1 and tune["sampler"] == "random"
        assert set(tune["validation"]) == {"fraction", "seed", "index_hash"}
        assert tune["validation"]["fraction"] == 0.1 and tune["validation"]["seed"] == 3
        assert record["status"] == "ok"
        assert "top1" not in record["metrics"] and 0 <= record["metrics"]["val_top1"] <= 100
        assert all(e.get("test_top1") is None and e["val_top1"] is not None
                   for e in record["history"])  # fmt: skip
        assert record["config"]["recipe"]["epochs"] == 1
        lr = record["config"]["recipe"]["optimizer"]["lr"]
        assert lr == tune["params"]["recipe.optimizer.lr"] and 0.01 <= lr <= 0.1
        assert record["dataset"]["validation"] + record["dataset"]["train"] == 1347
        assert "test" not in record["dataset"]
    kd = [r for r in trials if r["config"]["loss"]["label"] == "kd"]
    assert {r["protocol"]["lockstep_group"] for r in kd} >= {2}  # a round's trials, one group
    for study in studies:  # the published setting is trial 0 of every study
        first = next(r for r in trials if r["config"]["tune"]["study"] == study
                     and r["config"]["tune"]["trial"] == 0)  # fmt: skip
        assert first["config"]["recipe"]["optimizer"]["lr"] == 0.05
        if first["config"]["loss"]["label"] == "kd":
            assert first["config"]["tune"]["params"]["temperature"] == 4.0


def test_the_best_trial_of_each_method_trains_on_the_full_split_and_is_tested(tuned_run):
    out = tuned_run / "out"
    trials, finals = by_phase(out, "trial"), by_phase(out, "final")
    assert len(finals) == 2
    for final in finals:
        tune = final["config"]["tune"]
        assert set(tune) >= FINAL_KEYS
        mine = [r for r in trials if r["config"]["tune"]["study"] == tune["study"]]
        best = max(mine, key=lambda r: (r["metrics"]["val_top1"], -r["config"]["tune"]["trial"]))
        assert tune["selected"] == best["config"]["tune"]["params"]
        assert tune["selected_val_top1"] == best["metrics"]["val_top1"]
        assert final["config"]["recipe"]["epochs"] == 2  # the benchmark's own recipe
        assert final["config"]["seed"] == 0  # the benchmark's seeds
        assert final["dataset"]["train"] == 1347 and final["dataset"]["test"] == 450
        assert final["metrics"]["top1"] is not None and "val_top1" not in final["metrics"]


def test_status_counts_trials_and_finals(tuned_run: Path):
    result = run_cli("status", "out", cwd=tuned_run)
    assert result.returncode == 0, result.stderr
    assert "out: 2 cells" in result.stdout
    assert "done     2" in result.stdout and "pending  0" in result.stdout
    assert "trials   6 of at most 6 (6 ok)" in result.stdout


def test_a_report_of_a_tuned_folder_is_made_of_its_finals(tuned_run: Path):
    result = run_cli("report", "out", cwd=tuned_run)
    assert result.returncode == 0, result.stderr
    assert "2 records (0 failed)" in result.stdout  # the finals; trials have no test figure


# --- tuned beside published: the leaderboard ------------------------------------------------


@pytest.fixture(scope="module")
def beside_run(tmp_path_factory) -> Path:
    """The tuned file with ``[tune] published = true``: each method's published setting
    runs with the benchmark's seeds too, and the report shows both."""
    folder = tmp_path_factory.mktemp("beside")
    bench = write_benchmark(folder, text=TUNED.replace("[tune]\n", "[tune]\npublished = true\n"))
    result = run_cli("run", str(bench), "--out", "out", "--quiet", "--threads", "1", cwd=folder)
    assert result.returncode == 0, result.stderr
    report = run_cli("report", "out", "--out", "report", "--no-reference", cwd=folder)
    assert report.returncode == 0, report.stderr
    return folder


def test_published_settings_run_beside_the_finals(beside_run: Path):
    out = beside_run / "out"
    finals, untuned = by_phase(out, "final"), by_phase(out, None)
    assert len(finals) == 2 and len(untuned) == 2
    assert {f["config"]["tune"]["published_cell"] for f in finals} == {
        r["cell_id"] for r in untuned
    }
    kd = [r for r in untuned if r["config"]["loss"]["label"] == "kd"]
    assert kd[0]["config"]["recipe"]["optimizer"]["lr"] == 0.05
    assert "tune" not in kd[0]["config"]  # the very cell an untuned run of the file has
    kd_final = next(r for r in finals if r["config"]["loss"]["label"] == "kd")
    assert kd_final["protocol"]["lockstep_group"] == 2  # beside its published cell
    status = run_cli("status", "out", cwd=beside_run)
    assert "out: 4 cells" in status.stdout, status.stdout
    assert "done     4" in status.stdout and "pending  0" in status.stdout


def test_the_leaderboard_shows_tuned_rows_their_selection_and_trials(beside_run: Path):
    out, report = beside_run / "out", beside_run / "report"
    board = json.loads((report / "leaderboard.json").read_text())
    (pair,) = board["pairs"]
    rows = {r["method"]: r for r in pair["rows"]}
    assert set(rows) == {"ce", "kd", "ce (tuned)", "kd (tuned)"}
    top1 = {(r["config"]["loss"]["label"], r["config"].get("phase")): r["metrics"]["top1"]
            for r in records(out) if r["config"].get("phase") != "trial"}  # fmt: skip
    # paired against the baseline of the same protocol: tuned with tuned, published with published
    assert rows["kd (tuned)"]["delta_vs_baseline"] == pytest.approx(
        top1[("kd", "final")] - top1[("ce", "final")]
    )
    assert rows["kd"]["delta_vs_baseline"] == pytest.approx(top1[("kd", None)] - top1[("ce", None)])
    assert pair["baseline_top1"] == pytest.approx(top1[("ce", None)])
    kd_final = next(r for r in by_phase(out, "final") if r["config"]["loss"]["label"] == "kd")
    tuned = rows["kd (tuned)"]
    assert tuned["tuned"] == "3 trials of 1 epoch, 10 % validation, random sampler"
    assert tuned["selected"] == kd_final["config"]["tune"]["selected"]
    assert rows["kd"]["tuned"] is None and rows["kd"]["trials"] is None
    trials = {r["config"]["tune"]["trial"]: r for r in by_phase(out, "trial")
              if r["config"]["tune"]["study"] == kd_final["config"]["tune"]["study"]}  # fmt: skip
    assert [t["trial"] for t in tuned["trials"]] == [0, 1, 2]
    for entry in tuned["trials"]:
        assert entry["val_top1"] == trials[entry["trial"]]["metrics"]["val_top1"]
        assert entry["params"] == trials[entry["trial"]]["config"]["tune"]["params"]
    markdown = (report / "leaderboard.md").read_text()
    assert "| kd (tuned) " in markdown and "Tuned:" in markdown
    assert "- kd (tuned): 3 trials of 1 epoch, 10 % validation, random sampler (3 ran); selected" \
        in markdown  # fmt: skip
    assert "ce baseline: " in markdown and "(tuned: " in markdown
    header = (report / "leaderboard.csv").read_text().splitlines()[0]
    assert header.endswith(",tuned,selected,selected_val_top1")
    assert len(list((report / "plots").glob("sensitivity_*.png"))) == 1  # one tuned pair
    assert "tuning sensitivity" in (report / "leaderboard.html").read_text()


def test_a_deleted_trial_record_reruns_alone(tuned_run: Path):
    out = tuned_run / "out"
    victim = next(r for r in by_phase(out, "trial") if r["config"]["tune"]["trial"] == 1)
    path = out / "records" / f"{victim['cell_id']}.json"
    path.unlink()
    before = record_mtimes(out)
    trials = study_trials(out)
    status = run_cli("status", "out", cwd=tuned_run)
    assert "trials   5 of at most 6 (5 ok)" in status.stdout
    result = run_cli("run", "out/benchmark.toml", "--out", "out", "--quiet", cwd=tuned_run)
    assert result.returncode == 0, result.stderr
    after = record_mtimes(out)
    assert set(after) == set(before) | {path.name}
    assert all(after[name] == mtime for name, mtime in before.items())  # nothing else reran
    rerun = json.loads(path.read_text())
    assert rerun["metrics"]["val_top1"] == victim["metrics"]["val_top1"]
    assert study_trials(out) == trials  # the studies knew it: nothing new asked or told


def study_trials(out: Path) -> dict[str, list[tuple]]:
    """Every study's trials in the results folder's journal: number, state, value."""
    storage = studies.storage(out / "tuning" / "optuna.journal")
    return {
        summary.study_name: [
            (t.number, t.state.name, t.value)
            for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials
        ]
        for summary in optuna.get_all_study_summaries(storage)
    }


def test_permuting_the_test_labels_changes_no_selection(tmp_path: Path):
    bench = write_benchmark(tmp_path, text=TUNED.replace("trials = 3", "trials = 2"))

    class Permuted(RunContext):
        def dataset(self, spec):
            data, fingerprint = super().dataset(spec)
            labels = data.test.labels[torch.randperm(len(data.test), generator=torch.Generator()
                                                     .manual_seed(0))]  # fmt: skip
            test = Split(data.test.images, labels)
            return replace(data, test=test), fingerprint + "-permuted"

    selections, tested = [], []
    for name, context in (("plain", RunContext()), ("permuted", Permuted())):
        out = tmp_path / name
        the_plan = plan(bench, context, validate=True)
        run_benchmark(the_plan, context, out_dir=out, quiet=True)
        finals = by_phase(out, "final")
        selections.append(
            {
                r["config"]["tune"]["study"]: (
                    r["config"]["tune"]["selected"],
                    r["config"]["tune"]["selected_val_top1"],
                )
                for r in finals
            }  # fmt: skip
        )
        tested.append(sorted(r["metrics"]["top1"] for r in finals))
    assert len(selections[0]) == 2
    assert selections[0] == selections[1]
    assert tested[0] != tested[1]  # the finals were tested, on labels that differ


PRUNED = (
    TINY.format(extra_pairs="")
    .replace("seeds = [0, 1]", "seeds = [0]")
    .replace("[losses.kd]\ntemperature = 4.0\n", "")
    + """
[tune]
trials = 4
trial_epochs = 3
sampler = "grid"
pruner = "median"
batch = 1

[tune.search]
"recipe.optimizer.lr" = { grid = [0.05, 0.0001, 0.0002, 0.0003] }
"""
)


def test_trials_far_below_the_median_are_pruned_and_never_selected(tmp_path: Path):
    """One trial per round: the two first finish (the median pruner's start), then the
    rest, with learning rates too small to learn in three epochs, are stopped early."""
    bench = write_benchmark(tmp_path, text=PRUNED)
    result = run_cli("run", str(bench), "--out", "out", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    trials = sorted(by_phase(out, "trial"), key=lambda r: r["config"]["tune"]["trial"])
    assert [r["config"]["recipe"]["optimizer"]["lr"] for r in trials][0] == 0.05
    assert [r["status"] for r in trials[:2]] == ["ok", "ok"]
    pruned = [r for r in trials if r["status"] == "pruned"]
    assert pruned, [r["metrics"] for r in trials]
    for record in pruned:
        assert 2 <= len(record["history"]) < 3  # judged from epoch 2, stopped before 3
        assert record["metrics"]["pruned_after_epoch"] == len(record["history"])
        assert record["metrics"]["val_top1"] == record["history"][-1]["val_top1"]
        assert "top1" not in record["metrics"]
        assert record["metrics"]["val_top1"] < trials[0]["metrics"]["val_top1"]
    (final,) = by_phase(out, "final")
    assert final["config"]["tune"]["selected"] == {"recipe.optimizer.lr": 0.05}
    status = run_cli("status", "out", cwd=tmp_path)
    assert f"({4 - len(pruned)} ok, {len(pruned)} pruned)" in status.stdout
    # records deleted: a pruned trial runs again to the same stop, a finished one to its end
    trials_before = study_trials(out)
    for record in (pruned[0], trials[1]):
        (out / "records" / f"{record['cell_id']}.json").unlink()
    result = run_cli("run", str(bench), "--out", "out", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for record in (pruned[0], trials[1]):
        again = json.loads((out / "records" / f"{record['cell_id']}.json").read_text())
        assert again["status"] == record["status"]
        assert again["history"] == record["history"]
    assert study_trials(out) == trials_before


def test_pruning_reaches_the_study_from_pool_workers(tmp_path: Path):
    """Out of process, trials report each epoch to the journal and are pruned as in it."""
    pooled = PRUNED + '\n[executor]\nname = "pool"\nparams = { workers = 1, threads = 1 }\n'
    bench = write_benchmark(tmp_path, text=pooled)
    result = run_cli("run", str(bench), "--out", "out", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = by_phase(tmp_path / "out", "trial")
    assert {r["executor"] for r in trials} == {"pool"}
    assert "pruned" in {r["status"] for r in trials}, [r["metrics"] for r in trials]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("slurm", '{ cluster = "local", array_parallelism = 2, cpus_per_task = 1, time = 10 }'),
        ("ray", "{ num_cpus = 1 }"),
    ],
)
def test_trials_run_and_are_pruned_on_slurm_and_ray_workers(tmp_path: Path, name, params):
    """Trials are cells on every executor: submitit's local cluster and a local Ray run
    them in worker processes, which report each epoch to the study journal and stop
    where the study prunes them; the final run goes through the same executor."""
    pytest.importorskip({"slurm": "submitit", "ray": "ray"}[name])
    executor = f'\n[executor]\nname = "{name}"\nparams = {params}\n'
    bench = write_benchmark(tmp_path, text=PRUNED + executor)
    result = run_cli("run", str(bench), "--out", "out", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = by_phase(tmp_path / "out", "trial")
    assert len(trials) == 4 and {r["executor"] for r in trials} == {name}
    assert "pruned" in {r["status"] for r in trials}, [r["metrics"] for r in trials]
    (final,) = by_phase(tmp_path / "out", "final")
    assert final["executor"] == name and final["status"] == "ok"
    assert final["config"]["tune"]["selected"] == {"recipe.optimizer.lr": 0.05}


def test_a_killed_search_resumes_without_rerunning_finished_trials(tmp_path: Path):
    bench = write_benchmark(tmp_path, text=TUNED.replace("batch = 2", "batch = 1"))
    out = tmp_path / "out"
    process = start(bench, out)
    wait_for_first_record(process, out)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = record_mtimes(out)
    assert 0 < len(before) < 8
    result = run_cli("run", str(bench), "--out", "out", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = record_mtimes(out)
    assert all(after[name] == mtime for name, mtime in before.items())  # none trained again
    assert len(by_phase(out, "trial")) == 6 and len(by_phase(out, "final")) == 2
    states = study_trials(out)
    assert [len(trials) for trials in states.values()] == [3, 3]
    assert all(state == "COMPLETE" for trials in states.values() for _, state, _ in trials)
    told = {(study, n): value for study, trials in states.items() for n, _, value in trials}
    for record in by_phase(out, "trial"):  # every study knows what its trials' records say
        tune = record["config"]["tune"]
        assert told[tune["study"], tune["trial"]] == record["metrics"]["val_top1"]
