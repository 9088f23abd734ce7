"""Leaderboards from hand-written records of two machines: every format, every marker.

tests/data/records/ holds CIFAR-100 records of two pairs split over machine_a and
machine_b: a method whose three seeds all failed (crd), a method missing a seed (at),
a method with one failed seed (ShuffleV1 kd), and three cells recorded on both
machines (an identical copy, a copy with other metrics, and a failed retry). The
expected numbers are computed here from the seed values below, independently of
kdbench's statistics.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from kdbench.cli import cli
from kdbench.records.identity import experiment_id
from kdbench.records.store import read_record
from kdbench.reporting.collect import collect
from kdbench.reporting.leaderboard import build
from kdbench.reporting.reference import load_reference
from kdbench.reporting.render_latex import tex

DATA = Path(__file__).parent / "data" / "records"
MACHINES = [DATA / "machine_a", DATA / "machine_b"]
REFERENCE = Path(__file__).parents[1] / "results" / "reference"
T975 = {1: 12.706204736174707, 2: 4.302652729911275}  # two-sided 95 % t, by dof
TEACHER_TOP1 = 79.05
R8, SV1 = "resnet8x4", "ShuffleV1"
TITLES = {R8: "cifar100: resnet32x4 → resnet8x4", SV1: "cifar100: resnet32x4 → ShuffleV1"}

# (student, method) -> seed -> top-1, as written in the fixture (None: the cell failed).
SEEDS = {
    (R8, "ce"): {0: 72.10, 1: 72.60, 2: 72.40},
    (R8, "kd"): {0: 73.50, 1: 73.90, 2: 73.20},
    (R8, "dkd"): {0: 76.10, 1: 76.50, 2: 76.30},
    (R8, "crd"): {0: None, 1: None, 2: None},
    (R8, "at"): {0: 73.00, 1: 73.60},
    (R8, "kd_ls"): {0: 75.80, 1: 76.20, 2: 75.90},
    (SV1, "ce"): {0: 70.20, 1: 70.90, 2: 70.40},
    (SV1, "kd"): {0: 74.00, 1: None, 2: 74.40},
    (SV1, "dkd"): {0: 76.00, 1: 76.80, 2: 75.90},
}
# (student, method) -> seed -> best_top1 (best evaluated epoch, test-selected), where the
# fixture records one; kd_ls seed 1 has none, so its best figure covers 2 of 3 seeds.
BEST = {
    (R8, "dkd"): {0: 76.6, 1: 76.8, 2: 76.7},
    (R8, "kd"): {0: 73.9, 1: 74.1, 2: 73.6},
    (R8, "kd_ls"): {0: 76.3, 2: 76.1},
}
DUPLICATES = {"0339300e71f1": "same", "76e99bee92ea": "differ", "c59a96d57f77": "differ"}


# Expected values, computed without kdbench ---------------------------------------------


def expected(student: str, method: str) -> dict:
    seeds = SEEDS[(student, method)]
    ok = [v for v in seeds.values() if v is not None]
    n = len(ok)
    mean = statistics.fmean(ok) if ok else math.nan
    std = statistics.stdev(ok) if n > 1 else math.nan
    ci = T975[n - 1] * std / math.sqrt(n) if n > 1 else math.nan
    base = statistics.fmean(SEEDS[(student, "ce")].values())
    best = list(BEST.get((student, method), {}).values())
    return {
        "best_mean": statistics.fmean(best) if best else math.nan,
        "best_std": statistics.stdev(best) if len(best) > 1 else math.nan,
        "best_n": len(best),
        "n": n,
        "n_failed": sum(v is None for v in seeds.values()),
        "missing": sorted({0, 1, 2} - set(seeds)),
        "mean": mean,
        "std": std,
        "ci": ci,
        "delta": mean - base,
        "gap": (mean - base) / (TEACHER_TOP1 - base),
    }


def paired_text(student: str, method: str) -> str:
    """The paired difference from ce over shared seeds, as the tables print it."""
    from scipy import stats

    own, base = SEEDS[(student, method)], SEEDS[(student, "ce")]
    seeds = [s for s in own if own[s] is not None and s in base]
    diffs = [own[s] - base[s] for s in seeds]
    mean = statistics.fmean(diffs)
    ci = T975[len(diffs) - 1] * statistics.stdev(diffs) / math.sqrt(len(diffs))
    text = f"{mean:+.2f} ± {ci:.2f}"
    if len(diffs) != expected(student, method)["n"]:
        text += f" (n={len(diffs)})"
    p = stats.ttest_rel([own[s] for s in seeds], [base[s] for s in seeds]).pvalue
    return f"{text} ▲" if mean > 0 and p < 0.05 else text


def methods_of(student: str) -> list[str]:
    return [m for s, m in SEEDS if s == student]


def best_of(student: str) -> str:
    scored = {m: expected(student, m)["mean"] for m in methods_of(student)}
    return max((m for m in scored if not math.isnan(scored[m])), key=scored.get)


def overlaps_best(student: str, method: str) -> bool:
    best, this = expected(student, best_of(student)), expected(student, method)
    if method == best_of(student) or this["n"] < 2:
        return False
    return (
        this["mean"] - this["ci"] <= best["mean"] + best["ci"]
        and best["mean"] - best["ci"] <= this["mean"] + this["ci"]
    )


def published() -> dict[tuple[str, str], tuple[float, str, str]]:
    """(student, method) -> (top-1, source, statistic) read straight from the reference CSV."""
    out = {}
    with open(REFERENCE / "cifar100_published.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["teacher"] == "resnet32x4" and row["student"] in (R8, SV1):
                out[(row["student"], row["method"])] = (
                    float(row["top1"]),
                    row["source"],
                    row["statistic"],
                )
    return out


PUBLISHED_NAME = {"ce": "student", "kd_ls": "kd+ls"}


def published_for(student: str, method: str) -> float | None:
    got = published().get((student, PUBLISHED_NAME.get(method, method)))
    return got[0] if got else None


def statistic_for(student: str, method: str) -> str:
    return published()[(student, PUBLISHED_NAME.get(method, method))][2]


def vs_published(student: str, method: str) -> float:
    """Measured minus published, each published figure against the measured one of its kind:
    last epoch for ``last``, best epoch (all seeds) for ``best``, nothing for ``unstated``."""
    e, pub = expected(student, method), published_for(student, method)
    stat = statistic_for(student, method) if pub is not None else None
    if stat == "last":
        return e["mean"] - pub
    if stat == "best" and e["best_n"] == e["n"] > 0:
        return e["best_mean"] - pub
    return math.nan


def test_published_figures_are_compared_with_the_measured_figure_of_their_kind():
    """The reference says which epoch each source reports; every kind occurs here."""
    assert statistic_for(R8, "kd") == "last" and not math.isnan(vs_published(R8, "kd"))
    assert statistic_for(R8, "dkd") == "best"
    assert vs_published(R8, "dkd") == pytest.approx(statistics.fmean([76.6, 76.8, 76.7]) - 76.32)
    assert statistic_for(R8, "kd_ls") == "best" and math.isnan(vs_published(R8, "kd_ls"))
    assert statistic_for(SV1, "dkd") == "best" and math.isnan(vs_published(SV1, "dkd"))
    assert published()[(R8, "dist")][2] == "unstated"


def best_text(e: dict) -> str:
    if e["best_n"] == 0:
        return "-"
    text = (
        f"{e['best_mean']:.2f} ± {e['best_std']:.2f}"
        if e["best_n"] > 1
        else f"{e['best_mean']:.2f}"
    )
    return text if e["best_n"] == e["n"] else f"{text} (n={e['best_n']})"


def vs_published_text(student: str, method: str) -> str:
    value = vs_published(student, method)
    if math.isnan(value):
        return "-"
    kind = {"best": "best‡", "last": "last"}[statistic_for(student, method)]
    return f"{value:+.2f} ({kind})"


def top1_text(e: dict) -> str:
    return f"{e['mean']:.2f} ± {e['std']:.2f}" if e["n"] > 1 else f"{e['mean']:.2f}"


def status_text(e: dict) -> str:
    if e["n"] == 0:
        return "failed"
    parts = [f"{e['n_failed']} failed"] if e["n_failed"] else []
    if e["missing"]:
        parts.append(f"missing seed {', '.join(map(str, e['missing']))}")
    return "; ".join(parts) or "ok"


def measured_cases() -> list[tuple[str, str]]:
    return list(SEEDS)


# Shared outputs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def published_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("published")
    result = CliRunner().invoke(
        cli, ["report", *map(str, MACHINES), "--out", str(out), "--reference", str(REFERENCE)]
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def board_set():
    return build(collect(MACHINES), load_reference(REFERENCE))


def test_fixture_files_hold_the_seed_values_above():
    """The tables below are checked against SEEDS; make sure SEEDS is the fixture."""
    seen: dict[str, list[tuple[str, dict]]] = {}
    for machine in MACHINES:
        for path in sorted((machine / "records").glob("*.json")):
            record = json.loads(path.read_text())
            seen.setdefault(record["cell_id"], []).append((machine.name, record))
    assert {cid for cid, copies in seen.items() if len(copies) > 1} == set(DUPLICATES)
    found: dict[tuple[str, str], dict[int, float | None]] = {}
    best: dict[tuple[str, str], dict[int, float]] = {}
    for copies in seen.values():
        # The copy that should win: the successful one, then the one that finished last.
        _, record = max(copies, key=lambda c: (c[1]["status"] == "ok", c[1]["finished_at"]))
        config = record["config"]
        key = (config["student"]["name"], config["loss"]["label"])
        value = record["metrics"]["top1"] if record["status"] == "ok" else None
        found.setdefault(key, {})[config["seed"]] = value
        if "best_top1" in (record.get("metrics") or {}):
            best.setdefault(key, {})[config["seed"]] = record["metrics"]["best_top1"]
    assert found == SEEDS
    assert best == BEST


# Duplicates ----------------------------------------------------------------------------


def test_duplicates_are_counted_once_and_reported_with_both_paths():
    found = collect(MACHINES)
    assert len(found.records) == sum(len(s) for s in SEEDS.values())
    assert len({r["cell_id"] for r in found.records}) == len(found.records)
    duplicates = [w for w in found.warnings if w.startswith("duplicate record")]
    assert len(duplicates) == len(DUPLICATES)
    for cell, verdict in DUPLICATES.items():
        (warning,) = [w for w in duplicates if cell in w]
        assert f"kept {DATA / 'machine_a' / 'records' / cell}.json" in warning
        assert f"ignored {DATA / 'machine_b' / 'records' / cell}.json" in warning
        assert ("they differ" in warning) == (verdict == "differ")
    (differ,) = [w for w in duplicates if "76e99bee92ea" in w]
    assert "metrics.top1 76.5 (kept) vs 76.9" in differ
    (retry,) = [w for w in duplicates if "c59a96d57f77" in w]
    assert "status ok (kept) vs failed" in retry
    assert found.paths[migrated("c59a96d57f77")].parent.parent.name == "machine_a"


def test_the_same_folder_twice_is_not_a_duplicate():
    found = collect([MACHINES[0], MACHINES[0] / "records"])
    assert not [w for w in found.warnings if w.startswith("duplicate")]


def test_cli_warns_about_duplicates_on_stderr():
    result = CliRunner().invoke(cli, ["report", *map(str, MACHINES), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("kdbench: warning: duplicate record") == 3
    assert "duplicate" not in result.stdout


def migrated(name: str) -> str:
    """The id a machine-a record file of an older schema is read under."""
    return read_record(MACHINES[0] / "records" / f"{name}.json").cell_id


def _renamed_copy(tmp_path: Path, **loss_params) -> dict:
    """A machine-a record under another benchmark name (and loss parameters)."""
    source = MACHINES[0] / "records" / "eaa8309a79a5.json"  # resnet8x4 kd, seed 1
    record = json.loads(source.read_text())
    record["cell_id"] = "0123456789ab"
    record["config"]["benchmark"] = "renamed"
    record["config"]["loss"]["params"].update(loss_params)
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "0123456789ab.json").write_text(json.dumps(record))
    return record


def test_one_experiment_under_another_benchmark_name_counts_once(tmp_path: Path):
    record = _renamed_copy(tmp_path)
    board_set = build(collect([MACHINES[0], tmp_path]))
    (warning,) = [w for w in board_set.warnings if "0123456789ab" in w]
    # Migration gives both the experiment's id, whatever the benchmark's name.
    assert warning.startswith(f"duplicate record for cell {migrated('eaa8309a79a5')} (")
    rows = [r for b in board_set.boards for r in b.measured if migrated("eaa8309a79a5") in r.cells]
    assert rows and all(r.seeds.count(record["config"]["seed"]) == 1 for r in rows)
    assert not any("0123456789ab" in r.cells for b in board_set.boards for r in b.measured)


def test_one_seed_of_two_configurations_is_two_rows_unless_pooled(tmp_path: Path):
    """Same method name, other parameters: its own row; --pool merges and says so."""
    record = _renamed_copy(tmp_path, temperature=123.0)
    config = record["config"]
    board_set = build(collect([MACHINES[0], tmp_path]))
    rows = [r for b in board_set.boards for r in b.measured if r.method == config["loss"]["label"]]
    mine = [r for r in rows if experiment_id(config) in r.cells]
    assert len(mine) == 1 and mine[0].n == 1 and mine[0].config
    (other,) = [r for r in rows if migrated("eaa8309a79a5") in r.cells]
    assert other.config and other.config != mine[0].config
    assert mine[0].label == f"{config['loss']['label']} [{mine[0].config}]"

    pooled = build(collect([MACHINES[0], tmp_path]), pool=True)
    (warning,) = [w for w in pooled.warnings if "recorded by more than one cell" in w]
    assert f"{config['loss']['label']}: seed(s) [{config['seed']}]" in warning
    assert any("2 configurations pooled" in w for w in pooled.warnings)
    rows = [r for b in pooled.boards for r in b.measured if experiment_id(config) in r.cells]
    assert rows and all(r.seeds.count(config["seed"]) == 2 and not r.config for r in rows)


def test_no_records_is_a_usage_error(tmp_path: Path):
    (tmp_path / "records").mkdir()
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "no records found" in result.output


# The leaderboard itself ----------------------------------------------------------------


def test_boards_rows_numbers_and_markers(board_set):
    boards = {b.student: b for b in board_set.boards}
    assert set(boards) == {R8, SV1}
    for student, board in boards.items():
        assert board.title == TITLES[student]
        assert board.teacher_top1 == pytest.approx(TEACHER_TOP1)
        measured = [r for r in board.rows if r.kind == "measured"]
        assert [r.method for r in measured] == sorted(
            methods_of(student),
            key=lambda m: (math.isnan(expected(student, m)["mean"]), -expected(student, m)["mean"]),
        )
        for row in measured:
            e = expected(student, row.method)
            assert row.n == e["n"] and row.n_failed == e["n_failed"], row.method
            assert row.missing_seeds == e["missing"]
            assert row.status == status_text(e)
            for field, key in (("mean", "mean"), ("std", "std"), ("ci", "ci"), ("delta", "delta")):
                assert _same(getattr(row, field), e[key]), (student, row.method, field)
            assert _same(row.gap, e["gap"])
            assert row.best == (row.method == best_of(student))
            assert bool(row.overlaps_best) == overlaps_best(student, row.method), row.method
            pub = published_for(student, row.method)
            assert _same(row.published, math.nan if pub is None else pub)
            if pub is not None and e["n"]:
                assert _same(row.vs_published, vs_published(student, row.method)), row.method
            assert row.best_n == e["best_n"] and _same(row.best_mean, e["best_mean"])


def test_failed_cells_are_shown_not_dropped(board_set):
    (crd,) = [
        r for b in board_set.boards for r in b.rows if r.method == "crd" and r.kind == "measured"
    ]
    assert crd.status == "failed" and crd.n == 0 and crd.n_failed == 3
    assert crd.errors == [f"seed {s}: loss is nan at epoch 3" for s in (0, 1, 2)]
    (kd,) = [r for r in _board(board_set, SV1).rows if r.method == "kd" and r.kind == "measured"]
    assert kd.status == "1 failed" and kd.errors == ["seed 1: CUDA out of memory"]


def test_published_rows_sit_beside_measured_rows_and_change_no_statistic(board_set):
    bare = build(collect(MACHINES), [])
    for board, plain in zip(board_set.boards, bare.boards, strict=True):
        assert [r.method for r in plain.rows] == [r.method for r in board.measured]
        for row, same in zip(board.measured, plain.rows, strict=True):
            assert (row.mean, row.best, row.overlaps_best) == (
                same.mean,
                same.best,
                same.overlaps_best,
            )
        for i, row in enumerate(board.rows):
            if row.kind == "published" and i > 0 and board.rows[i - 1].method == row.method:
                assert board.rows[i - 1].kind == "measured"
    assert board_set.cross.rank == bare.cross.rank
    board = _board(board_set, R8)
    kd_ls = [r for r in board.rows if r.method == "kd_ls"]
    assert [r.kind for r in kd_ls] == ["measured", "published"]  # kd+ls in the CSV
    assert kd_ls[1].mean == published()[(R8, "kd+ls")][0]
    assert board.teacher_published.top1 == published()[(R8, "teacher")][0]
    only_published = {r.method for r in board.rows if r.kind == "published"} - set(methods_of(R8))
    assert only_published == {"dist", "reviewkd", "dkd+ls"}


def test_cross_pair_average_ranks(board_set):
    cross = board_set.cross
    expected_ranks = {}
    for student in (R8, SV1):
        means = {m: expected(student, m)["mean"] for m in methods_of(student)}
        ordered = sorted((m for m in means if not math.isnan(means[m])), key=lambda m: -means[m])
        for i, m in enumerate(ordered, start=1):
            expected_ranks.setdefault(m, []).append(i)
    for method, got in expected_ranks.items():
        assert cross.avg_rank[method] == pytest.approx(statistics.fmean(got)), method
        assert cross.n_ranked[method] == len(got)
    assert math.isnan(cross.avg_rank["crd"])
    # kd_ls has the better mean rank but on one pair of two: complete rows come first
    assert cross.n_ranked["kd_ls"] == 1 and cross.avg_rank["kd_ls"] < cross.avg_rank["kd"]
    assert cross.methods[:3] == ["dkd", "kd", "ce"]


# Markdown ------------------------------------------------------------------------------


def md_tables(text: str) -> dict[str, list[list[str]]]:
    """Section title -> rows (cells stripped) of the first table in that section."""
    out: dict[str, list[list[str]]] = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = section.partition("\n")
        lines = [ln for ln in body.splitlines() if ln.startswith("|")]
        if lines:
            out[title.strip()] = [
                [c.strip() for c in re.split(r"(?<!\\)\|", ln.strip())[1:-1]]
                for ln in lines
                if not re.match(r"^\|[-|: ]+\|$", ln)
            ]
    return out


def test_markdown_rows_numbers_and_markers(published_dir: Path):
    text = (published_dir / "leaderboard.md").read_text()
    tables = md_tables(text)
    for student, title in TITLES.items():
        header, *rows = tables[title]
        col = {name: i for i, name in enumerate(header)}
        by_method = {r[0]: r for r in rows}
        for method in methods_of(student):
            e, row = expected(student, method), by_method[method]
            top = row[col["top-1 %"]]
            if e["n"] == 0:
                assert top == "failed"
            elif method == best_of(student):
                assert top == f"**{top1_text(e)}**"
            elif overlaps_best(student, method):
                assert top == f"{top1_text(e)} †"
            else:
                assert top == top1_text(e)
            assert row[col["n"]] == str(e["n"])
            assert row[col["status"]] == status_text(e)
            assert row[col["95% CI ±"]] == (f"{e['ci']:.2f}" if e["n"] > 1 else "-")
            if method == "ce":
                assert row[col["Δ vs ce (paired)"]] == "baseline"
            elif e["n"]:
                assert row[col["Δ vs ce (paired)"]] == paired_text(student, method)
                assert row[col["gap closed"]] == f"{e['gap'] * 100:.0f} %"
            assert row[col["best‡ % (test-selected)"]] == best_text(e), method
            pub = published_for(student, method)
            if pub is not None and e["n"]:
                assert row[col["vs published"]] == vs_published_text(student, method)
                label = f"*{method} (published, {statistic_for(student, method)})*"
                assert by_method[label][col["top-1 %"]] == f"{pub:.2f}"
                source = published()[(student, PUBLISHED_NAME.get(method, method))][1]
                assert by_method[label][col["source"]] == source
                assert rows.index(by_method[label]) == rows.index(row) + 1
    assert "crd seed 0: loss is nan at epoch 3" in text
    assert text.count("duplicate record for cell") == 3
    cross_header, *cross_rows = tables["All pairs: top-1 % (rank in pair)"]
    assert cross_header[1:3] == [TITLES[R8], TITLES[SV1]]  # sorted by student, any case
    dkd = next(r for r in cross_rows if r[0] == "dkd")
    assert dkd[2] == f"**{expected(SV1, 'dkd')['mean']:.2f} (1)**"
    assert dkd[-1] == "1.00"
    at = next(r for r in cross_rows if r[0] == "at")
    assert at[2] == "-" and at[-1] == "4.00 (1/2 pairs)"
    runs = tables["Provenance"]
    assert {r[runs[0].index("device")] for r in runs[1:]} == {
        "NVIDIA A100-SXM4-40GB",
        "NVIDIA H100 80GB HBM3",
    }


# CSV and JSON --------------------------------------------------------------------------


def _check_data_rows(rows: list[dict], number) -> None:
    """Rows from CSV or JSON (``number`` turns a cell into float or NaN)."""
    for (student, method), _ in SEEDS.items():
        e = expected(student, method)
        (row,) = [
            r
            for r in rows
            if r["student"] == student and r["method"] == method and r["kind"] == "measured"
        ]
        assert number(row["n"]) == e["n"] and number(row["n_failed"]) == e["n_failed"]
        for column, key in (("top1_mean", "mean"), ("top1_std", "std"), ("ci95", "ci")):
            assert _same(number(row[column]), e[key]), (student, method, column)
        if e["n"]:
            assert _same(number(row["delta_vs_baseline"]), e["delta"])
            assert _same(number(row["gap_recovered"]), e["gap"])
        assert row["status"] == status_text(e)
        pub = published_for(student, method)
        if pub is not None and e["n"]:
            assert _same(number(row["vs_published"]), vs_published(student, method))
            assert row["vs_published_statistic"] == statistic_for(student, method)
        assert _same(number(row["best_top1_test_selected_mean"]), e["best_mean"])
        assert number(row["best_top1_test_selected_n"]) == e["best_n"]
        assert row["statistic"] == "last"
    kinds = {(r["student"], r["method"], r["kind"]) for r in rows}
    for (student, method), (value, source, stat) in published().items():
        if method == "teacher":
            continue
        label = {v: k for k, v in PUBLISHED_NAME.items()}.get(method, method)
        assert (student, label, "published") in kinds, (student, method)
        (row,) = [
            r
            for r in rows
            if (r["student"], r["method"], r["kind"]) == (student, label, "published")
        ]
        assert number(row["top1_mean"]) == value and row["source"] == source
        assert row["statistic"] == stat


def _csv_number(value: str) -> float:
    return math.nan if value == "" else float(value)


def _json_number(value) -> float:
    return math.nan if value is None else float(value)


def test_csv_rows_and_numbers(published_dir: Path):
    rows = list(csv.DictReader(io.StringIO((published_dir / "leaderboard.csv").read_text())))
    _check_data_rows(rows, _csv_number)
    best = {(r["student"], r["method"]) for r in rows if r["best"] == "True"}
    assert best == {(s, best_of(s)) for s in (R8, SV1)}
    overlap = {(r["student"], r["method"]) for r in rows if r["ci_overlaps_best"] == "True"}
    assert overlap == {k for k in SEEDS if overlaps_best(*k)}
    cross = list(csv.DictReader(io.StringIO((published_dir / "cross_pair.csv").read_text())))
    assert {r["method"]: r["avg_rank"] for r in cross}["dkd"] == "1.0"
    prov = list(csv.DictReader(io.StringIO((published_dir / "provenance.csv").read_text())))
    assert len(prov) == sum(len(s) for s in SEEDS.values())
    assert {r["git"] for r in prov} == {"aaaaaaaaaaaa", "bbbbbbbbbbbb+dirty"}


def test_csv_on_stdout_is_the_leaderboard_table():
    result = CliRunner().invoke(cli, ["report", *map(str, MACHINES), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    _check_data_rows(rows, _csv_number)


def test_json_rows_numbers_and_markers(published_dir: Path):
    data = json.loads((published_dir / "leaderboard.json").read_text())
    rows = [row for pair in data["pairs"] for row in pair["rows"]]
    _check_data_rows(rows, _json_number)
    overlap = {(r["student"], r["method"]) for r in rows if r["ci_overlaps_best"]}
    assert overlap == {k for k in SEEDS if overlaps_best(*k)}
    assert [p["title"] for p in data["pairs"]] == [TITLES[R8], TITLES[SV1]]
    assert data["pairs"][0]["teacher_published"]["top1"] == published()[(R8, "teacher")][0]
    ranks = {m["method"]: m["avg_rank"] for m in data["cross_pair"]["methods"]}
    assert ranks["dkd"] == 1.0 and ranks["crd"] is None
    assert len(data["warnings"]) == 3
    assert {r["device"] for r in data["runs"]} == {"NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3"}


# LaTeX ---------------------------------------------------------------------------------


def check_latex_structure(text: str) -> list[str]:
    """Balanced braces and environments, booktabs rules in order, equal column counts;
    returns the body lines of every tabular."""
    code = "\n".join(re.sub(r"(?<!\\)%.*", "", line) for line in text.splitlines())
    plain = re.sub(r"\\[{}%&_#$]", "", code)
    depth = 0
    for ch in plain:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "closing brace without an opening one"
    assert depth == 0, "unclosed brace"
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+\*?)\}", plain):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, f"\\end{{{env}}} does not close its \\begin"
    assert not stack, f"unclosed environments {stack}"
    assert not re.search(r"(?<!\\)[_#]", re.sub(r"\$[^$]*\$", "", code)), "unescaped _ or #"
    rows = []
    tabulars = re.findall(r"\\begin\{tabular\}\{([lrc]+)\}(.*?)\\end\{tabular\}", code, re.S)
    assert tabulars
    for spec, body in tabulars:
        rules = re.findall(r"\\(toprule|midrule|bottomrule)", body)
        assert rules[0] == "toprule" and rules[-1] == "bottomrule" and "midrule" in rules
        assert rules.count("toprule") == 1 and rules.count("bottomrule") == 1
        lines = [ln for ln in body.splitlines() if ln.rstrip().endswith(r"\\")]
        for line in lines:
            assert len(re.findall(r"(?<!\\)&", line)) == len(spec) - 1, line
        rows += lines
    return rows


def compile_latex(fragment: Path, workdir: Path) -> None:
    """pdflatex on a minimal document that \\inputs the fragment; fails on any error."""
    doc = workdir / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n\\begin{document}\n"
        f"\\input{{{fragment.as_posix()}}}\n\\end{{document}}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert (workdir / "doc.pdf").stat().st_size > 1000
    log = (workdir / "doc.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log and "Missing $" not in log


def test_latex_rows_bold_best_and_daggers(published_dir: Path):
    text = (published_dir / "leaderboard.tex").read_text()
    rows = check_latex_structure(text)
    for student in (R8, SV1):
        for method in methods_of(student):
            e = expected(student, method)
            (line,) = [
                ln
                for ln in rows
                if ln.startswith(tex(method) + " & ")
                and f" & {e['n']} & " in ln
                and (e["n"] == 0 or f"{e['mean']:.2f}" in ln)
            ]
            cell = line.split(" & ")[1]
            shown = top1_text(e).replace("±", "$\\pm$") if e["n"] else "failed"
            if method == best_of(student):
                assert cell == f"\\textbf{{{shown}}}"
            elif overlaps_best(student, method):
                assert cell == shown + "$^\\dagger$"
            else:
                assert cell == shown
    assert r"kd\_ls" in text and "kd_ls" not in text
    assert r"\textit{kd\_ls (published, best)}" in text
    assert r"best$^\ddagger$ \% (test-selected)" in text
    assert "HobbitLong/RepDistiller README.md" in text


def test_tex_escapes_every_special_character():
    assert tex("a_b & 50% #1 $x {y} ~ ^ \\") == (
        r"a\_b \& 50\% \#1 \$x \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{}"
    )


needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex is absent (apt-get install texlive-latex-base texlive-latex-recommended)",
)


@needs_pdflatex
def test_latex_compiles(published_dir: Path, tmp_path: Path):
    compile_latex(published_dir / "leaderboard.tex", tmp_path)


# HTML ----------------------------------------------------------------------------------


class Tables(HTMLParser):
    """Tables of a page by id: rows of (cell attributes, cell text), header first."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[dict, str]]]] = {}
        self.row_attrs: dict[str, list[dict]] = {}
        self.resources: list[tuple[str, dict]] = []
        self._table = self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("img", "script", "link", "iframe", "source"):
            self.resources.append((tag, attrs))
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
            self.row_attrs[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
            self.row_attrs[self._table].append(attrs)
        elif tag in ("td", "th") and self._table:
            self._cell = [attrs, ""]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append((self._cell[0], self._cell[1].strip()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


def parse_html(text: str) -> Tables:
    parser = Tables()
    parser.feed(text)
    return parser


def assert_self_contained(page: Tables) -> None:
    for tag, attrs in page.resources:
        assert "src" not in attrs or attrs["src"].startswith("data:image/png;base64,"), tag
        assert "href" not in attrs, tag


def test_html_rows_numbers_markers_and_provenance(published_dir: Path):
    page = parse_html((published_dir / "leaderboard.html").read_text())
    assert_self_contained(page)
    assert sum(tag == "img" for tag, _ in page.resources) == 4  # 2 bars, 2 scatters
    for index, student in enumerate((R8, SV1)):
        header, *rows = page.tables[f"board-{index}"]
        col = {text: i for i, (_, text) in enumerate(header)}
        kinds = page.row_attrs[f"board-{index}"][1:]
        measured = {
            r[0][1]: r for r, a in zip(rows, kinds, strict=True) if a["data-kind"] == "measured"
        }
        assert set(measured) == set(methods_of(student))
        for method, row in measured.items():
            e = expected(student, method)
            attrs, text = row[col["top-1 %"]]
            assert _same(_csv_number(attrs["data-sort"]), e["mean"])
            assert ("class" in attrs and "best" in attrs["class"]) == (method == best_of(student))
            assert text.endswith("†") == overlaps_best(student, method), method
            attrs, text = row[col["best‡ % (test-selected)"]]
            assert text == best_text(e) and _same(_csv_number(attrs["data-sort"]), e["best_mean"])
            assert row[col["status"]][1] == status_text(e)
        sources = [
            r[col["source"]][1]
            for r, a in zip(rows, kinds, strict=True)
            if a["data-kind"] == "published"
        ]
        assert "HobbitLong/RepDistiller README.md" in sources
    provenance = page.tables["provenance"]
    assert len(provenance) - 1 == sum(len(s) for s in SEEDS.values())
    header = [text for _, text in provenance[0]]
    for column in ("kdbench", "git", "torch", "device", "config_hash", "python"):
        assert column in header
    devices = {row[header.index("device")][1] for row in provenance[1:]}
    assert devices == {"NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3"}


# Plots ---------------------------------------------------------------------------------


def test_plot_files_are_png_and_svg(published_dir: Path):
    plots = sorted(p.name for p in (published_dir / "plots").iterdir())
    stems = {p.rsplit(".", 1)[0] for p in plots}
    assert stems == {
        "cifar100_accuracy_vs_latency",
        "cifar100_accuracy_vs_params",
        "bars_cifar100-resnet32x4-to-resnet8x4",
        "bars_cifar100-resnet32x4-to-shufflev1",
    }
    for stem in stems:
        png = (published_dir / "plots" / f"{stem}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        svg = (published_dir / "plots" / f"{stem}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg


def test_scatter_points_pareto_front_and_legend_outside(board_set):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from kdbench.reporting.plots import points, scatter

    pts = points(board_set, "cifar100", "latency")
    assert {(p.student, p.method) for p in pts} == {k for k in SEEDS if expected(*k)["n"]}
    for p in pts:
        e = expected(p.student, p.method)
        assert _same(p.mean, e["mean"]) and _same(p.std, 0.0 if e["n"] < 2 else e["std"])
    fig = scatter(board_set, "cifar100", "latency")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax = fig.axes[0]
    front = [line for line in ax.lines if line.get_linestyle() == "--" and len(line.get_xdata())]
    (line,) = front
    # methods of one student share its one cost: the front runs across architectures,
    # through each student's best method
    tops = {}
    for p in pts:
        if p.student not in tops or p.mean > tops[p.student].mean:
            tops[p.student] = p
    cost = {(p.student, p.method): p.cost for p in tops.values()}
    mean = {(p.student, p.method): p.mean for p in tops.values()}
    keys = sorted(cost, key=lambda k: (cost[k], -mean[k]))
    want, best = [], -math.inf
    for k in keys:
        if mean[k] > best:
            want.append(k)
            best = mean[k]
    assert list(line.get_xdata()) == [cost[k] for k in want]
    assert list(line.get_ydata()) == [mean[k] for k in want]
    (legend,) = fig.legends
    renderer = canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1


def _board(board_set, student: str):
    return next(b for b in board_set.boards if b.student == student)


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
