"""Leaderboards: records grouped per (dataset, teacher -> student) pair, one row per method.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdbench.core.config import BASELINE_LOSS
from kdbench.records.costs import Cost, architecture_costs
from kdbench.records.identity import LOCATION, configuration_id, stable_hash
from kdbench.reporting.collect import Collected
from kdbench.reporting.reference import BEST, LAST, TEACHER, Published, for_pair, method_key
from kdbench.reporting.stats import (
    Paired,
    SeedStats,
    gap_recovered,
    intervals_overlap,
    paired,
    ranks,
    seed_stats,
)

NAN = math.nan
MEASURED, PUBLISHED = "measured", "published"


@dataclass
class Row:
    """One method of one pair: measured over seeds, or one published figure."""

    kind: str
    method: str
    status: str = "ok"
    n: int = 0
    n_failed: int = 0
    seeds: list[int] = field(default_factory=list)
    missing_seeds: list[int] = field(default_factory=list)
    mean: float = NAN
    std: float = NAN
    ci: float = NAN
    top5: float = NAN
    best_mean: float = NAN  # best evaluated epoch's top-1: selected on the test split
    best_std: float = NAN
    best_n: int = 0
    best_epoch: float = NAN
    delta: float = NAN
    paired: Paired | None = None  # difference from the baseline over shared seeds
    better: bool | None = None  # better than the baseline by the paired t-test
    gap: float = NAN
    best: bool = False
    overlaps_best: bool | None = None
    extra_params: float = NAN
    train_s: float = NAN
    step_ms: float = NAN
    published: float = NAN
    vs_published: float = NAN
    statistic: str = LAST  # which epoch the top-1 is (published rows: as their source says)
    vs_statistic: str = ""  # the kind of figure vs_published compares
    source: str = ""
    shared: bool = False
    errors: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    config: str = ""  # the configuration hash, set where a method has several on a board
    per_seed: dict[int, float] = field(default_factory=dict)
    # series ("test_top1", "train/<term>") -> (epoch, mean, std, n) over seeds
    curves: dict[str, list[tuple[int, float, float, int]]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The method, with its configuration where the board has several of it."""
        return f"{self.method} [{self.config}]" if self.config else self.method

    @property
    def failed(self) -> bool:
        return self.kind == MEASURED and self.n == 0 and self.n_failed > 0

    def stats(self) -> SeedStats:
        return SeedStats(self.n, self.mean, self.std, self.ci)


@dataclass
class Board:
    """The leaderboard of one (dataset, teacher -> student) pair."""

    dataset: str
    teacher: str
    student: str
    teacher_name: str
    student_name: str
    teacher_top1: float = NAN
    teacher_published: Published | None = None
    baseline: float = NAN
    seeds: list[int] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    variant: str = ""
    costs: list[Cost] = field(default_factory=list)  # the student's, one per device
    teacher_costs: list[Cost] = field(default_factory=list)

    @property
    def cost(self) -> Cost | None:
        """The cost every row of this student shows (the first device's)."""
        return self.costs[0] if self.costs else None

    @property
    def pair(self) -> str:
        base = f"{self.teacher} → {self.student}"
        return f"{base} [{self.variant}]" if self.variant else base

    @property
    def title(self) -> str:
        return f"{self.dataset}: {self.pair}"

    @property
    def measured(self) -> list[Row]:
        return [r for r in self.rows if r.kind == MEASURED]

    @property
    def has_published(self) -> bool:
        return self.teacher_published is not None or any(r.kind == PUBLISHED for r in self.rows)


@dataclass
class CrossPair:
    """Methods x pairs top-1 matrix with each method's average rank (rank 1 = best)."""

    columns: list[str]
    methods: list[str]
    top1: dict[tuple[str, str], float]
    status: dict[tuple[str, str], str]
    teacher: dict[str, float]
    rank: dict[tuple[str, str], float]
    avg_rank: dict[str, float]
    n_ranked: dict[str, int]
    best: dict[str, float]
    published: dict[tuple[str, str], dict[str, float]]  # (method, statistic) -> pair -> top-1


@dataclass
class Leaderboard:
    boards: list[Board]
    cross: CrossPair
    runs: list[dict[str, Any]]
    provenance: list[dict[str, Any]]
    warnings: list[str]


def model_label(spec: dict[str, Any] | None) -> str:
    """A model's name, with its parameters when it has any (``cnn(width=4)``)."""
    if not spec:
        return "-"
    params = spec.get("params") or {}
    if not params:
        return spec["name"]
    inner = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{spec['name']}({inner})"


@dataclass
class _Item:
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


def _item(record: dict[str, Any], path: Path | None) -> _Item:
    config = record["config"]
    teacher = config.get("teacher")
    dataset = config["dataset"]
    data_params = {k: v for k, v in (dataset.get("params") or {}).items() if k not in LOCATION}
    setting = stable_hash(
        {
            "dataset": [dataset["name"], data_params],
            "student": config["student"],
            "recipe": config.get("recipe"),
        }
    )
    return _Item(
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
    )


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
    boards = _boards(items, reference, warnings, pool)
    return Leaderboard(
        boards=boards,
        cross=cross_pair(boards),
        runs=_runs(items),
        provenance=[_provenance_row(i) for i in items],
        warnings=list(dict.fromkeys(warnings)),  # shared baselines would repeat theirs
    )


def _boards(
    items: list[_Item], reference: list[Published], warnings: list[str], pool: bool
) -> list[Board]:
    pairs: dict[tuple, list[_Item]] = defaultdict(list)
    shared: dict[tuple, list[_Item]] = defaultdict(list)
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
        _fill(board, members, reference, warnings, pool)
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
    board: Board, items: list[_Item], reference: list[Published], warnings: list[str], pool: bool
) -> None:
    teacher_acc = [
        (i.record.get("teacher") or {}).get("top1")
        for i in items
        if i.teacher_id is not None and (i.record.get("teacher") or {}).get("top1") is not None
    ]
    board.teacher_top1 = float(teacher_acc[0]) if teacher_acc else NAN
    board.seeds = sorted({i.seed for i in items})
    by_method: dict[tuple[str, str], list[_Item]] = defaultdict(list)
    for item in items:
        by_method[(item.method, "" if pool else item.configuration)].append(item)
    rows = [_measured_row(method, group, board.seeds) for (method, _), group in by_method.items()]
    configs = defaultdict(list)
    for (method, config), row in zip(by_method, rows, strict=True):
        configs[method].append((config, row))
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
    base = next((r for r in rows if r.method == BASELINE_LOSS), None)
    board.baseline = base.mean if base else NAN
    done = [(i.record, i.path) for i in items if i.ok]
    board.costs = architecture_costs(done)
    board.teacher_costs = architecture_costs([d for d in done if d[0]["config"].get("teacher")],
                                             "teacher")  # fmt: skip
    for row in rows:
        row.delta = row.mean - board.baseline
        row.gap = gap_recovered(row.mean, board.baseline, board.teacher_top1)
        if base is not None and row is not base:
            row.paired = paired(row.per_seed, base.per_seed)
            row.better = row.paired.better()
    _mark_best(rows)
    rows.sort(key=lambda r: (math.isnan(r.mean), -r.mean if not math.isnan(r.mean) else 0, r.label))
    board.rows = _with_published(board, rows, reference)


def _measured_row(method: str, items: list[_Item], all_seeds: list[int]) -> Row:
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


def _per_seed(items: list[_Item]) -> dict[int, float]:
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


def _with_published(board: Board, rows: list[Row], reference: list[Published]) -> list[Row]:
    published = for_pair(reference, board.dataset, board.teacher, board.student)
    if not published:
        return rows
    by_key = {method_key(p.method): p for p in published if p.method != TEACHER}
    board.teacher_published = next((p for p in published if p.method == TEACHER), None)
    out, matched = [], set()
    for row in rows:
        out.append(row)
        pub = by_key.get(method_key(row.method))
        if pub is None:
            continue
        matched.add(method_key(row.method))
        row.published = pub.top1
        row.vs_published = measured_figure(row, pub.statistic) - pub.top1
        row.vs_statistic = pub.statistic
        out.append(_published_row(pub, row.method))
    rest = [p for k, p in by_key.items() if k not in matched]
    out.extend(_published_row(p, p.method) for p in sorted(rest, key=lambda p: -p.top1))
    return out


def measured_figure(row: Row, statistic: str) -> float:
    """The measured mean of the kind a published figure is (NaN when unstated or missing).

    A best-epoch figure is only complete when every finished seed has one.
    """
    if statistic == LAST:
        return row.mean
    if statistic == BEST and row.best_n == row.n:
        return row.best_mean
    return NAN


def _published_row(pub: Published, method: str) -> Row:
    return Row(
        kind=PUBLISHED,
        method=method,
        status=PUBLISHED,
        mean=pub.top1,
        std=pub.std,
        published=pub.top1,
        statistic=pub.statistic,
        source=pub.source,
    )


def published_label(method: str, statistic: str) -> str:
    """A published row's name in tables: the method and which epoch its source reports."""
    return f"{method} (published, {statistic})"


def cross_pair(boards: list[Board]) -> CrossPair:
    """The layout of KD papers' main table, plus each method's mean rank over pairs."""
    columns = [b.title for b in boards]
    top1, status, rank, teacher, best, published = {}, {}, {}, {}, {}, defaultdict(dict)
    order: dict[str, None] = {}
    for board, column in zip(boards, columns, strict=True):
        teacher[column] = board.teacher_top1
        means = {}
        for row in board.rows:
            if row.kind == PUBLISHED:
                published[(row.method, row.statistic)][column] = row.mean
                continue
            order.setdefault(row.label)
            top1[(row.label, column)] = row.mean
            status[(row.label, column)] = row.status
            if row.n > 0:
                means[row.label] = row.mean
        for method, value in ranks(means).items():
            rank[(method, column)] = value
        best[column] = max(means.values()) if means else NAN
    avg_rank, n_ranked = {}, {}
    for method in order:
        got = [rank[(method, c)] for c in columns if (method, c) in rank]
        avg_rank[method] = statistics.fmean(got) if got else NAN
        n_ranked[method] = len(got)
    # Coverage first: a method ranked on fewer pairs never sorts above one ranked on more,
    # however good its few ranks (missing data must not pay).
    methods = sorted(order, key=lambda m: (math.isnan(avg_rank[m]), -n_ranked[m], avg_rank[m], m))
    return CrossPair(
        columns=columns,
        methods=methods,
        top1=top1,
        status=status,
        teacher=teacher,
        rank=rank,
        avg_rank=avg_rank,
        n_ranked=n_ranked,
        best=best,
        published=dict(published),
    )


def _git(prov: dict[str, Any]) -> str:
    git = prov.get("git") or {}
    sha = git.get("sha")
    if not sha:
        return "-"
    return sha[:12] + ("+dirty" if git.get("dirty") else "")


def _provenance_row(item: _Item) -> dict[str, Any]:
    record = item.record
    prov = record.get("provenance") or {}
    return {
        "cell_id": record["cell_id"],
        "dataset": item.dataset,
        "pair": f"{item.teacher or '-'} → {item.student}",
        "method": item.method,
        "seed": item.seed,
        "status": record.get("status"),
        "benchmark": record["config"].get("benchmark"),
        "config_hash": record.get("benchmark_config_hash"),
        "kdbench": prov.get("kdbench"),
        "git": _git(prov),
        "python": prov.get("python"),
        "torch": prov.get("torch"),
        "cuda": prov.get("cuda"),
        "device": prov.get("device"),
        "threads": prov.get("threads"),
        "platform": prov.get("platform"),
        "dataset_fingerprint": (record.get("dataset") or {}).get("fingerprint"),
        "finished_at": record.get("finished_at"),
        "path": str(item.path) if item.path else None,
    }


RUN_KEYS = (
    "folder", "benchmark", "config_hash", "kdbench", "git", "python", "torch", "cuda",
    "device", "platform",
)  # fmt: skip


def _runs(items: list[_Item]) -> list[dict[str, Any]]:
    """Records grouped by where and with what they were produced: one row per run."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        row = _provenance_row(item)
        path = item.path
        row["folder"] = str(path.parent.parent if path and path.parent.name == "records" else
                            (path.parent if path else "-"))  # fmt: skip
        groups[tuple(row.get(k) for k in RUN_KEYS)].append(row)
    runs = []
    for key, rows in groups.items():
        times = sorted(r["finished_at"] for r in rows if r["finished_at"])
        runs.append(
            {
                **dict(zip(RUN_KEYS, key, strict=True)),
                "records": len(rows),
                "failed": sum(r["status"] != "ok" for r in rows),
                "first_finished": times[0] if times else None,
                "last_finished": times[-1] if times else None,
            }
        )
    return sorted(runs, key=lambda r: (str(r["folder"]), str(r["first_finished"])))
