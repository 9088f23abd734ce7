"""Building leaderboards: records grouped per (dataset, teacher -> student) pair, one row
per method, into the model of :mod:`kdbench.reporting.board_model`.

The numbers every output format shows are computed here once, so Markdown, CSV, JSON,
LaTeX and HTML can never disagree. A pair is a dataset, a teacher (its id: model,
parameters, recipe, seed) and a student trained with one recipe; methods that need no
teacher (the ``ce`` baseline) are shared by every pair of the same student and recipe.
Published numbers are attached as separate rows and never enter a statistic.

A row pools the seeds of one configuration (:func:`kdbench.records.identity.configuration_id`):
records of a method run with other parameters (another benchmark's ``kd`` temperature)
are a row of their own, labelled with their configuration hash, unless ``pool`` asks
for one row per method name.

The headline is the last epoch's top-1. The best evaluated epoch's (``best_top1``) is
carried beside it, because some sources publish that figure; it is selected on the test
split, so it never sorts, ranks or picks the best method. A published figure is compared
with the measured figure of its own kind (:mod:`kdbench.reporting.reference`).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdbench.core.config import BASELINE_LOSS
from kdbench.core.search_space import with_recipe_values
from kdbench.records.costs import architecture_costs
from kdbench.records.identity import LOCATION, configuration_id, recipe_experiment, stable_hash
from kdbench.reporting.board_model import (
    MEASURED,
    NAN,
    Board,
    Leaderboard,
    Row,
    TrialPoint,
    Tuning,
    model_label,
)
from kdbench.reporting.collect import Collected
from kdbench.reporting.cross_pair import cross_pair
from kdbench.reporting.provenance_tables import provenance_row, run_rows
from kdbench.reporting.published_rows import (
    with_published,
)
from kdbench.reporting.reference import Published
from kdbench.reporting.stats import (
    gap_recovered,
    intervals_overlap,
    paired,
    seed_stats,
)


@dataclass
class Item:
    """A record reduced to what a leaderboard needs."""

    record: dict[str, Any]
    path: Path | None
    dataset: str
    student: str
    student_name: str
    teacher: str | None
    teacher_name: str | None
    teacher_id: str | None
    setting: str
    method: str
    seed: int
    ok: bool
    configuration: str
    tuned: bool  # a tuned method's final run (``phase = "final"``)


def _item(record: dict[str, Any], path: Path | None) -> Item:
    config = record["config"]
    teacher = config.get("teacher")
    dataset = config["dataset"]
    data_params = {k: v for k, v in (dataset.get("params") or {}).items() if k not in LOCATION}
    setting = stable_hash(
        {
            "dataset": [dataset["name"], data_params],
            "student": config["student"],
            "recipe": published_recipe(config),
        }
    )
    return Item(
        record=record,
        path=path,
        dataset=dataset["name"],
        student=model_label(config["student"]),
        student_name=config["student"]["name"],
        teacher=model_label(teacher["model"]) if teacher else None,
        teacher_name=teacher["model"]["name"] if teacher else None,
        teacher_id=(teacher.get("id") or stable_hash(teacher)) if teacher else None,
        setting=setting,
        method=config["loss"]["label"],
        seed=int(config["seed"]),
        ok=record.get("status") == "ok",
        configuration=configuration_id(config),
        tuned=config.get("phase") == "final",
    )


def published_recipe(config: dict[str, Any]) -> Any:
    """The recipe a cell's pair was set up with, as its experiment sees it: without
    execution switches (records of another kdbench version that spell those out, or lack
    them, sit on the same board), and for a tuned final run with its searched recipe keys
    (its learning rate) back at their published values."""
    recipe = config.get("recipe")
    published = (config.get("tune") or {}).get("published")
    if config.get("phase") == "final" and isinstance(published, dict) and recipe is not None:
        recipe = with_recipe_values(recipe, published)
    return recipe_experiment(recipe)


def build(
    collected: Collected, reference: Iterable[Published] = (), *, pool: bool = False
) -> Leaderboard:
    """Every pair's board, the cross-pair matrix and the provenance of every record.

    With ``pool``, a method's records form one row whatever their configuration.
    """
    reference = list(reference)
    items = [_item(r, collected.paths.get(r["cell_id"])) for r in collected.records]
    warnings = list(collected.warnings)
    warnings += [
        f"when cells ran: {problem}"
        for r in collected.records
        for problem in (r.get("provenance") or {}).get("plugin_problems") or ()
    ]
    studies = trials_by_study(collected.trials)
    boards = _boards(items, reference, warnings, pool, studies)
    return Leaderboard(
        boards=boards,
        cross=cross_pair(boards),
        runs=run_rows(items),
        provenance=[provenance_row(i) for i in items],
        warnings=list(dict.fromkeys(warnings)),  # shared baselines would repeat theirs
    )


def trials_by_study(trials: list[dict[str, Any]]) -> dict[str, list[TrialPoint]]:
    """Each study's trials, once each (a trial found in two folders is one), in order."""
    found: dict[str, dict[str, TrialPoint]] = defaultdict(dict)
    for record in trials:
        tune = record["config"].get("tune") or {}
        value = (record.get("metrics") or {}).get("val_top1")
        found[tune.get("study", "")][record["cell_id"]] = TrialPoint(
            number=int(tune.get("trial", -1)),
            params=dict(tune.get("params") or {}),
            val_top1=NAN if value is None else float(value),
            status=str(record.get("status")),
        )
    return {study: sorted(points.values(), key=lambda t: t.number)
            for study, points in found.items()}  # fmt: skip


def _boards(
    items: list[Item],
    reference: list[Published],
    warnings: list[str],
    pool: bool,
    studies: dict[str, list[TrialPoint]],
) -> list[Board]:
    pairs: dict[tuple, list[Item]] = defaultdict(list)
    shared: dict[tuple, list[Item]] = defaultdict(list)
    for item in items:
        if item.teacher_id is None:
            shared[(item.dataset, item.setting)].append(item)
        else:
            pairs[(item.dataset, item.setting, item.teacher_id)].append(item)
    used = {key[:2] for key in pairs}
    for key in shared:
        if key not in used:  # methods without a teacher and no pair: a board of their own
            pairs[(*key, None)] = []

    boards = []
    for key, own in pairs.items():
        members = own + shared.get(key[:2], [])
        first = own[0] if own else members[0]
        board = Board(
            dataset=first.dataset,
            teacher=first.teacher or "-",
            student=first.student,
            teacher_name=first.teacher_name or "-",
            student_name=first.student_name,
        )
        _fill(board, members, reference, warnings, pool, studies)
        boards.append((key, board))

    labels = defaultdict(list)
    for key, board in boards:
        labels[board.title].append(key)
    for key, board in boards:
        if len(labels[board.title]) > 1:  # same names, different recipe or teacher
            board.variant = stable_hash(list(key), length=6)
    ordered = sorted(
        (b for _, b in boards), key=lambda b: (b.dataset, b.student.lower(), b.pair.lower())
    )
    return ordered


def _fill(
    board: Board,
    items: list[Item],
    reference: list[Published],
    warnings: list[str],
    pool: bool,
    studies: dict[str, list[TrialPoint]],
) -> None:
    teacher_acc = [
        (i.record.get("teacher") or {}).get("top1")
        for i in items
        if i.teacher_id is not None and (i.record.get("teacher") or {}).get("top1") is not None
    ]
    board.teacher_top1 = float(teacher_acc[0]) if teacher_acc else NAN
    board.seeds = sorted({i.seed for i in items})
    by_method: dict[tuple[str, bool, str], list[Item]] = defaultdict(list)
    for item in items:  # a tuned method's row never pools with its published setting's
        by_method[(item.method, item.tuned, "" if pool else item.configuration)].append(item)
    rows = [_measured_row(method, group, board.seeds) for (method, *_), group in by_method.items()]
    configs = defaultdict(list)
    for (method, tuned, config), row, group in zip(by_method, rows, by_method.values(),
                                                     strict=True):  # fmt: skip
        configs[(method, tuned)].append((config, row))
        if tuned:
            row.tuning = tuning(group, studies)
    for variants in configs.values():
        if len(variants) > 1:  # name the configuration only where it tells rows apart
            for config, row in variants:
                row.config = config
    for row, group in zip(rows, by_method.values(), strict=True):
        pooled = {i.configuration for i in group}
        if len(pooled) > 1:
            warnings.append(
                f"{board.title} {row.method}: {len(pooled)} configurations pooled into one "
                f"row ({', '.join(sorted(pooled))})"
            )
        repeated = [s for s in set(row.seeds) if row.seeds.count(s) > 1]
        if repeated:
            warnings.append(
                f"{board.title} {row.method}: seed(s) {sorted(repeated)} recorded by more than "
                f"one cell ({', '.join(sorted(i.record['cell_id'] for i in group))}); "
                "each record counts as a sample"
            )
    bases: dict[bool, Row] = {}  # the baseline's first row, tuned (True) and not
    for row in rows:
        if row.method == BASELINE_LOSS:
            bases.setdefault(row.tuning is not None, row)
    shown = bases.get(False) or bases.get(True)  # the published setting's, where it ran
    board.baseline = shown.mean if shown else NAN
    if len(bases) == 2:
        board.tuned_baseline = bases[True].mean
    done = [(i.record, i.path) for i in items if i.ok]
    board.costs = architecture_costs(done)
    board.teacher_costs = architecture_costs([d for d in done if d[0]["config"].get("teacher")],
                                             "teacher")  # fmt: skip
    for row in rows:  # a tuned method is compared with the tuned baseline: equal budgets
        tuned = row.tuning is not None
        base = bases.get(tuned) or bases.get(not tuned)
        baseline = base.mean if base else NAN
        row.delta = row.mean - baseline
        row.gap = gap_recovered(row.mean, baseline, board.teacher_top1)
        if base is not None and row is not base:
            row.paired = paired(row.per_seed, base.per_seed)
            row.better = row.paired.better()
    _mark_best(rows)
    rows.sort(key=lambda r: (math.isnan(r.mean), -r.mean if not math.isnan(r.mean) else 0, r.label))
    board.rows = with_published(board, rows, reference)


def _measured_row(method: str, items: list[Item], all_seeds: list[int]) -> Row:
    ok = [i for i in items if i.ok]
    failed = [i for i in items if not i.ok]
    top1 = [i.record["metrics"]["top1"] for i in ok]
    s = seed_stats(top1)
    row = Row(kind=MEASURED, method=method, n=s.n, mean=s.mean, std=s.std, ci=s.ci)
    row.n_failed = len(failed)
    row.seeds = sorted(i.seed for i in ok)
    row.missing_seeds = sorted(set(all_seeds) - {i.seed for i in items})
    row.cells = sorted(i.record["cell_id"] for i in items)
    row.shared = all(i.teacher_id is None for i in items)
    row.errors = sorted({f"seed {i.seed}: {_first_line(i.record)}" for i in failed})
    records = [i.record for i in ok]
    row.top5 = _mean(_values(records, "metrics", "top5"))
    best = seed_stats(_values(records, "metrics", "best_top1"))
    row.best_mean, row.best_std, row.best_n = best.mean, best.std, best.n
    row.best_epoch = _mean(_values(records, "metrics", "best_epoch"))
    row.per_seed = _per_seed(ok)
    row.curves = curves(records)
    row.extra_params = _max(_values(records, "size", "extra_params"))
    row.train_s = _mean(_values(records, "cost", "train_seconds"))
    row.step_ms = _mean(_values(records, "cost", "step_ms"))
    row.status = _status(row)
    return row


def tuning(items: list[Item], studies: dict[str, list[TrialPoint]]) -> Tuning:
    """How a tuned row's setting was chosen, from its final records and its study's trials.

    Every seed's final run carries the same selection (a study selects once per method).
    """
    tune = items[0].record["config"]["tune"]
    return Tuning(
        study=tune["study"],
        trials=int(tune["trials"]),
        trial_epochs=int(tune["trial_epochs"]),
        validation=float(tune["validation"]["fraction"]),
        sampler=str(tune["sampler"]),
        selected=dict(tune["selected"]),
        selected_val_top1=float(tune["selected_val_top1"]),
        ran=studies.get(tune["study"], []),
    )


def _per_seed(items: list[Item]) -> dict[int, float]:
    """Each seed's top-1 (a seed recorded twice: the mean of its records)."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for item in items:
        by_seed[item.seed].append(item.record["metrics"]["top1"])
    return {seed: statistics.fmean(values) for seed, values in by_seed.items()}


def curves(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float, float, int]]]:
    """Per-epoch test top-1 and loss terms, mean and std over the seeds that have them.

    Records made before per-epoch evaluation have no test top-1: that series is absent.
    """
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        for entry in record.get("history") or []:
            epoch = int(entry["epoch"])
            if entry.get("test_top1") is not None:
                values["test_top1"][epoch].append(float(entry["test_top1"]))
            for term, value in (entry.get("train") or {}).items():
                values[f"train/{term}"][epoch].append(float(value))
    out = {}
    for name, by_epoch in sorted(values.items()):
        series = []
        for epoch, xs in sorted(by_epoch.items()):
            spread = seed_stats(xs)
            std = 0.0 if math.isnan(spread.std) else spread.std
            series.append((epoch, spread.mean, std, spread.n))
        out[name] = series
    return out


def _first_line(record: dict[str, Any]) -> str:
    message = str((record.get("error") or {}).get("message") or "failed").strip()
    return message.splitlines()[0] if message else "failed"


def _status(row: Row) -> str:
    if row.n == 0:
        return "failed" if row.n_failed else "no result"
    parts = []
    if row.n_failed:
        parts.append(f"{row.n_failed} failed")
    if row.missing_seeds:
        word = "seed" if len(row.missing_seeds) == 1 else "seeds"
        parts.append(f"missing {word} {', '.join(map(str, row.missing_seeds))}")
    return "; ".join(parts) or "ok"


def _values(records: list[dict[str, Any]], section: str, key: str) -> list[float]:
    out = []
    for record in records:
        value = (record.get(section) or {}).get(key)
        if isinstance(value, int | float) and not math.isnan(value):
            out.append(float(value))
    return out


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else NAN


def _max(xs: list[float]) -> float:
    return max(xs) if xs else NAN


def _mark_best(rows: list[Row]) -> None:
    """Best = highest mean; others are marked where their interval reaches the best's."""
    scored = [r for r in rows if r.n > 0]
    if not scored:
        return
    top = max(r.mean for r in scored)
    best = [r for r in scored if r.mean == top]
    for row in best:
        row.best = True
    for row in scored:
        if not row.best:
            row.overlaps_best = intervals_overlap(row.stats(), best[0].stats())
