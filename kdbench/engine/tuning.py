"""The tuning protocol: every method searched on a validation split with equal budgets,
then its selected setting trained on the full training split and tested.

A study is one method (loss label) of one pair on one dataset. Its trials are cells
(``phase = "trial"``): they train ``[tune] trial_epochs`` on the training split less the
validation split, are scored on the validation split only, and run through the executor
like any cell (trials of different losses share a lockstep group and its teacher
forward). The driver asks each study for a batch of trials, runs them, tells the study
their validation top-1, and repeats until every study has its ``[tune] trials``; then
each method's best trial is its selection, trained with the benchmark's seeds
(``phase = "final"``) and evaluated on the test split. The study journal and the trial
records make a killed search resume where it stopped.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from kdbench.core.config import BenchmarkConfig, Tune
from kdbench.core.registry import Registry
from kdbench.core.search_space import (
    Dimension,
    is_recipe_key,
    parse_space,
    recipe_value,
    with_recipe_values,
)
from kdbench.engine.context import RunContext
from kdbench.engine.matrix import Cell
from kdbench.engine.studies import JOURNAL, pruner, sampler, storage, suggest
from kdbench.engine.validation_split import held_out, index_hash
from kdbench.records.identity import configuration_id, stable_hash
from kdbench.records.schema import Record
from kdbench.records.store import RecordStore

if TYPE_CHECKING:
    from kdbench.engine.runner import Plan

Execute = Callable[[list[Cell], dict[str, dict[str, Any]]], None]
"""``execute(cells, pruning)``: run cells through the executor and write their records;
``pruning`` maps a trial's cell id to its study (:class:`kdbench.engine.job.CellJob`)."""


@dataclass
class Method:
    """One study: a method of a pair on a dataset, its space and its published setting."""

    name: str
    cells: list[Cell]  # the published setting, one cell per benchmark seed
    space: dict[str, Dimension]
    published: dict[str, Any]
    budget: int
    validation: dict[str, Any]
    study: optuna.Study
    seen: set[int] = field(default_factory=set)  # trial numbers this run has handled


def journal_path(out_dir: Path) -> Path:
    return (out_dir / JOURNAL).resolve()


def methods(
    cells: list[Cell],
    pair_of: dict[str, int],
    config: BenchmarkConfig,
    registry: Registry,
    validation: Callable[[Cell], dict[str, Any]],
    journal: Path,
) -> list[Method]:
    """The studies of a tuned benchmark, created in (or loaded from) the journal.

    A new study is given its first trials: the published setting (and, with the grid
    sampler, the rest of the grid in a seeded order, up to the budget).
    """
    tune = _tune(config)
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(configuration_id(cell.config()), []).append(cell)
    found = []
    studies = storage(journal)  # one replay of the journal for every study
    for key, seeds in groups.items():
        first = seeds[0]
        pair = config.pairs[pair_of.get(first.id, 0)]
        space, _ = parse_space(config.search_table(first.loss.label, pair), file=None, key="")
        published = {name: published_value(first, name, registry) for name in space}
        points = grid_points(space, published, tune.seed) if tune.sampler == "grid" else None
        budget = min(tune.trials, len(points)) if points is not None else tune.trials
        if not space:
            budget = 1  # nothing to choose: the published setting is the one trial
        name = f"{first.label().rsplit(' ', 1)[0]} {key}"
        grid = {k: list(d.points or ()) for k, d in space.items()}
        study = optuna.create_study(
            study_name=name,
            storage=studies,
            sampler=sampler(tune.sampler, tune.seed, grid),
            pruner=pruner(tune.pruner),
            direction="maximize",
            load_if_exists=True,
        )
        held = len(study.get_trials(deepcopy=False))
        if not held:
            for params in (points or [published])[:budget]:
                study.enqueue_trial(params)
        else:  # a resumed search draws afresh: the first run's seed would repeat its settings
            study.sampler = sampler(tune.sampler, resumed_seed(tune.seed, held), grid)
        found.append(Method(name, seeds, space, published, budget, validation(first), study))
    return found


def resumed_seed(seed: int, held: int) -> int:
    """The sampler's seed for a search resumed with ``held`` trials in its study.

    Seeded by ``[tune] seed`` alone, a restarted random or TPE sampler would draw the
    settings it drew before the kill, and those trials would be the cells already run:
    the budget would buy fewer distinct settings. The seed is still fixed by the file
    and the point of resumption, so a rerun from the same state draws the same trials.
    """
    return int(stable_hash([seed, held]), 16) % 2**31


def published_value(cell: Cell, name: str, registry: Registry) -> Any:
    """A searched key's published value: the benchmark file's, else the loss's default."""
    if is_recipe_key(name):
        return recipe_value(cell.recipe, name)
    if name in cell.loss.params:
        return cell.loss.params[name]
    return registry.get("losses", cell.loss.name).params[name]


def grid_points(
    space: dict[str, Dimension], published: dict[str, Any], seed: int
) -> list[dict[str, Any]]:
    """Every point of a grid: the published one first, the rest in a seeded order."""
    points: list[dict[str, Any]] = [{}]
    for name, dim in space.items():
        points = [{**p, name: v} for p in points for v in dim.points or ()]
    rest = [p for p in points if p != published]
    random.Random(seed).shuffle(rest)
    return [published, *rest]


def validation_of(tune: Tune, data_labels: Callable[[Cell], Any]) -> Callable[[Cell], dict]:
    """A cell's validation split as trials record it: fraction, seed, index hash."""

    def validation(cell: Cell) -> dict[str, Any]:
        indices = held_out(data_labels(cell), tune.validation, tune.seed)
        return {"fraction": tune.validation, "seed": tune.seed, "index_hash": index_hash(indices)}

    return validation


def with_params(cell: Cell, params: dict[str, Any]) -> Cell:
    """A cell with searched values in its loss parameters and recipe."""
    recipe = with_recipe_values(cell.recipe, params)
    loss = {**cell.loss.params, **{k: v for k, v in params.items() if not is_recipe_key(k)}}
    return replace(cell, recipe=recipe, loss=replace(cell.loss, params=loss))


def trial_cell(method: Method, tune: Tune, number: int, params: dict[str, Any]) -> Cell:
    """A trial: the method's cell with the trial's values, trained ``trial_epochs`` with
    ``[tune] seed`` and scored on the validation split after every epoch."""
    cell = with_params(method.cells[0], params)
    epochs = tune.trial_epochs or cell.recipe["epochs"]
    recipe = {**cell.recipe, "epochs": epochs, "eval_every": 1}
    schedule = recipe["schedule"]
    if epochs != cell.recipe["epochs"] and schedule.get("milestones"):
        scale = epochs / cell.recipe["epochs"]  # the same schedule, shrunk to the trial
        recipe["schedule"] = {
            **schedule,
            "milestones": sorted({max(1, round(m * scale)) for m in schedule["milestones"]}),
        }
    info = {
        "study": method.name,
        "trial": number,
        "params": params,
        "validation": method.validation,
        "sampler": tune.sampler,
        "trials": method.budget,
        "trial_epochs": epochs,
    }
    return replace(cell, seed=tune.seed, recipe=recipe, phase="trial", tune=info)


def finished(record: Record | None) -> bool:
    """A trial's record that needs no rerun: trained to the end, or pruned."""
    return record is not None and record.status in ("ok", "pruned")


def tune_methods(
    found: list[Method],
    tune: Tune,
    store: RecordStore,
    execute: Execute,
    journal: Path,
) -> None:
    """Ask, run and tell, round by round, until every study has its budget of trials.

    A round asks each study for ``[tune] batch`` trials (a grid: its next points); trials
    a killed run left running, and finished trials whose record is gone, run again
    first (their cells' records, where present, are not rerun: the study is told them).
    """
    while True:
        batch: list[tuple[Method, optuna.trial.FrozenTrial | optuna.Trial, Cell]] = []
        for method in found:
            trials = method.study.get_trials(deepcopy=False)
            for trial in trials:
                if trial.number in method.seen or trial.state == TrialState.WAITING:
                    continue
                method.seen.add(trial.number)
                cell = trial_cell(method, tune, trial.number, trial.params)
                if trial.state == TrialState.RUNNING or not finished(store.record(cell.id)):
                    batch.append((method, trial, cell))
            used = sum(1 for t in trials if t.state != TrialState.WAITING)
            for _ in range(max(0, min(method.budget - used, tune.batch))):
                asked = method.study.ask()
                params = {name: suggest(asked, name, dim) for name, dim in method.space.items()}
                method.seen.add(asked.number)
                batch.append((method, asked, trial_cell(method, tune, asked.number, params)))
        if not batch:
            return
        pruning = {}
        if tune.pruner != "none":
            pruning = {
                cell.id: info
                for method, trial, cell in batch
                if (info := _pruning(method, trial, journal, tune.pruner)) is not None
            }
        todo = {cell.id: cell for _, _, cell in batch if not finished(store.record(cell.id))}
        execute(list(todo.values()), pruning)
        for method, trial, cell in batch:
            if _state(method, trial.number) == TrialState.RUNNING:
                _tell(method, trial.number, store.record(cell.id))


def _pruning(
    method: Method, trial: optuna.trial.FrozenTrial | optuna.Trial, journal: Path, name: str
) -> dict[str, Any] | None:
    """What a trial's worker needs to be pruned: its study, while it runs; a trial the
    study pruned before (its record since deleted) stops again after the same epoch."""
    frozen = method.study.get_trials(deepcopy=False)[trial.number]
    if frozen.state == TrialState.RUNNING:
        return {"storage": str(journal), "study": method.name,
                "trial_id": frozen._trial_id, "pruner": name}  # fmt: skip
    if frozen.state == TrialState.PRUNED and frozen.intermediate_values:
        return {"stop_after": max(frozen.intermediate_values)}
    return None


def _state(method: Method, number: int) -> TrialState:
    return method.study.get_trials(deepcopy=False)[number].state


def _tell(method: Method, number: int, record: Record | None) -> None:
    """Tell a study what its trial's record says: validation top-1, pruned or failed."""
    if record is not None and record.status == "ok" and record.metrics is not None:
        method.study.tell(number, record.metrics.val_top1)
    elif record is not None and record.status == "pruned":
        method.study.tell(number, state=TrialState.PRUNED)
    else:
        method.study.tell(number, state=TrialState.FAIL)


def final_cells(found: list[Method], tune: Tune, say: Callable[[str], None]) -> list[Cell]:
    """Each method's selected setting (best validation top-1; the earlier trial on a tie)
    on the full training split, one cell per benchmark seed."""
    cells = []
    for method in found:
        done = [t for t in method.study.get_trials(deepcopy=False)
                if t.state == TrialState.COMPLETE]  # fmt: skip
        if not done:
            say(f"kdbench: warning: {method.name}: no trial finished, nothing to select")
            continue
        best = max(done, key=lambda t: (t.value, -t.number))
        selected = {name: best.params[name] for name in method.space}
        for cell in method.cells:
            info = {
                "study": method.name,
                "trials": method.budget,
                "trial_epochs": tune.trial_epochs or cell.recipe["epochs"],
                "validation": method.validation,
                "sampler": tune.sampler,
                "selected": selected,
                "published": method.published,
                "selected_val_top1": best.value,
                "published_cell": cell.id,
            }
            cells.append(replace(with_params(cell, selected), phase="final", tune=info))
    return cells


def run_tuning(
    the_plan: Plan,
    context: RunContext,
    store: RecordStore,
    execute: Execute,
    out_dir: Path,
    say: Callable[[str], None],
) -> list[Cell]:
    """The whole protocol for a planned, tuned benchmark; returns its final cells (and,
    with ``[tune] published``, the published settings' cells run beside them)."""
    tune = _tune(the_plan.config)
    journal = journal_path(out_dir)

    def labels(cell: Cell) -> Any:
        return context.dataset(cell.dataset)[0].train.labels

    found = methods(
        the_plan.cells, the_plan.pair_of, the_plan.config, context.plugins.registry,
        validation_of(tune, labels), journal,
    )  # fmt: skip
    tune_methods(found, tune, store, execute, journal)
    finals = final_cells(found, tune, say)
    if tune.published:  # in the same lockstep groups as the finals: one teacher forward
        finals += the_plan.cells
    execute([cell for cell in finals if not store.is_done(cell.id)], {})
    return finals


def _tune(config: BenchmarkConfig) -> Tune:
    if config.tune is None:
        raise ValueError("not a tuned benchmark")
    return config.tune
