"""`kdbench report` on the records of a real short run: every format against the records.

The run is the tiny digits benchmark of conftest with a second pair; the expected
numbers are computed here from the record files themselves.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from test_report_browser import (
    assert_sorts,
    console_errors,
    open_page,
    start_browser,
)
from test_report_fixture import check_latex_structure, compile_latex, md_tables, parse_html

from conftest import write_benchmark

pytestmark = pytest.mark.slow

T975 = {1: 12.706204736174707, 2: 4.302652729911275}
SECOND_PAIR = """
[[pairs]]
teacher = "cnn"
teacher_params = { width = 8 }
student = "cnn"
student_params = { width = 4 }
"""
TEACHER = "cnn(width=8)"
STUDENTS = ["cnn(width=4)", "mlp(hidden=16)"]


def kdbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kdbench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("run")
    bench = write_benchmark(folder, extra_pairs=SECOND_PAIR)
    results = folder / "results"
    done = kdbench("run", str(bench), "--out", str(results), "--quiet", cwd=folder)
    assert done.returncode == 0, done.stderr
    published = folder / "published"
    report = kdbench("report", str(results), "--out", str(published), cwd=folder)
    assert report.returncode == 0, report.stderr
    records = [json.loads(p.read_text()) for p in sorted((results / "records").glob("*.json"))]
    return {"results": results, "out": published, "records": records, "stdout": report.stdout}


def label(spec: dict) -> str:
    inner = ",".join(f"{k}={v}" for k, v in sorted(spec["params"].items()))
    return f"{spec['name']}({inner})" if inner else spec["name"]


def expected(records: list[dict]) -> dict[tuple[str, str], dict]:
    """(student, method) -> seed statistics, gain and gap, straight from the records."""
    seeds: dict[tuple[str, str], list[float]] = {}
    by_seed: dict[tuple[str, str], dict[int, float]] = {}
    teacher = {}
    for r in records:
        assert r["status"] == "ok"
        key = (label(r["config"]["student"]), r["config"]["loss"]["label"])
        seeds.setdefault(key, []).append(r["metrics"]["top1"])
        by_seed.setdefault(key, {})[r["config"]["seed"]] = r["metrics"]["top1"]
        if r["teacher"]:
            teacher[key[0]] = r["teacher"]["top1"]
    out = {}
    for (student, method), xs in seeds.items():
        n, mean, std = len(xs), statistics.fmean(xs), statistics.stdev(xs)
        base = statistics.fmean(seeds[(student, "ce")])
        own, ce = by_seed[(student, method)], by_seed[(student, "ce")]
        diffs = [own[k] - ce[k] for k in sorted(own)]
        gap = (mean - base) / (teacher[student] - base) if teacher[student] > base else math.nan
        out[(student, method)] = {
            "n": n,
            "mean": mean,
            "std": std,
            "ci": T975[n - 1] * std / math.sqrt(n),
            "delta": mean - base,
            "paired": statistics.fmean(diffs),
            "paired_ci": T975[n - 1] * statistics.stdev(diffs) / math.sqrt(n),
            "gap": gap,
        }
    return out


def marks(stats: dict, student: str) -> tuple[set[str], set[str]]:
    """(best methods, methods whose interval overlaps the best's) of one student."""
    mine = {m: s for (st, m), s in stats.items() if st == student}
    top = max(s["mean"] for s in mine.values())
    best = {m for m, s in mine.items() if s["mean"] == top}
    b = mine[sorted(best)[0]] if len(best) == 1 else None
    overlap = set()
    for m, s in mine.items():
        if m in best:
            continue
        ref = b or next(mine[x] for x in mine if x in best)
        if s["mean"] - s["ci"] <= ref["mean"] + ref["ci"] and ref["mean"] - ref["ci"] <= (
            s["mean"] + s["ci"]
        ):
            overlap.add(m)
    return best, overlap


def test_every_format_and_plot_is_written(run):
    out = run["out"]
    for name in ("leaderboard.md", "leaderboard.csv", "cross_pair.csv", "provenance.csv"):
        assert (out / name).stat().st_size > 0
    for name in ("leaderboard.tex", "leaderboard.html", "leaderboard.json"):
        assert (out / name).stat().st_size > 0
    stems = {p.stem for p in (out / "plots").glob("*.png")}
    assert stems == {p.stem for p in (out / "plots").glob("*.svg")}
    assert {"digits_accuracy_vs_latency", "digits_accuracy_vs_params"} <= stems
    assert len([s for s in stems if s.startswith("bars_")]) == 2
    assert str(out / "leaderboard.md") in run["stdout"]


def test_markdown_matches_the_records(run):
    stats = expected(run["records"])
    tables = md_tables((run["out"] / "leaderboard.md").read_text())
    for student in STUDENTS:
        header, *rows = tables[f"digits: {TEACHER} → {student}"]
        col = {name: i for i, name in enumerate(header)}
        by_method = {r[0]: r for r in rows}
        assert set(by_method) == {"ce", "kd"}
        best, overlap = marks(stats, student)
        means = [stats[(student, r[0])]["mean"] for r in rows]
        assert means == sorted(means, reverse=True)
        for method, row in by_method.items():
            s = stats[(student, method)]
            text = f"{s['mean']:.2f} ± {s['std']:.2f}"
            if method in best:
                text = f"**{text}**"
            elif method in overlap:
                text += " †"
            assert row[col["top-1 %"]] == text
            assert row[col["n"]] == "2" and row[col["status"]] == "ok"
            assert row[col["95% CI ±"]] == f"{s['ci']:.2f}"
            if method == "kd":
                text = row[col["Δ vs ce (paired)"]]
                assert text.removesuffix(" ▲") == f"{s['paired']:+.2f} ± {s['paired_ci']:.2f}"
    cross_header, *_ = tables["All pairs: top-1 % (rank in pair)"]
    assert cross_header[1:3] == [f"digits: {TEACHER} → {s}" for s in STUDENTS]


def test_csv_and_json_match_the_records(run):
    stats = expected(run["records"])
    rows = list(csv.DictReader(io.StringIO((run["out"] / "leaderboard.csv").read_text())))
    data = json.loads((run["out"] / "leaderboard.json").read_text())
    json_rows = [row for pair in data["pairs"] for row in pair["rows"]]
    for table, number in ((rows, float), (json_rows, float)):
        assert len(table) == len(stats)
        for row in table:
            s = stats[(row["student"], row["method"])]
            assert number(row["top1_mean"]) == pytest.approx(s["mean"], abs=1e-9)
            assert number(row["top1_std"]) == pytest.approx(s["std"], abs=1e-9)
            assert number(row["ci95"]) == pytest.approx(s["ci"], abs=1e-9)
            assert number(row["delta_vs_baseline"]) == pytest.approx(s["delta"], abs=1e-9)
            if not math.isnan(s["gap"]):
                assert number(row["gap_recovered"]) == pytest.approx(s["gap"], abs=1e-9)
            assert row["kind"] == "measured" and row["teacher"] == TEACHER
    by_cell = {r["cell_id"]: r for r in run["records"]}
    assert {p["cell_id"] for p in data["provenance"]} == set(by_cell)
    for prov in data["provenance"]:
        record = by_cell[prov["cell_id"]]
        assert prov["torch"] == record["provenance"]["torch"]
        assert prov["device"] == record["provenance"]["device"]
        assert prov["config_hash"] == record["benchmark_config_hash"]
    (only_run,) = data["runs"]
    assert only_run["records"] == len(run["records"]) and only_run["failed"] == 0


def test_latex_from_the_run(run, tmp_path):
    text = (run["out"] / "leaderboard.tex").read_text()
    rows = check_latex_structure(text)
    assert any(r.startswith("kd & ") for r in rows) and r"\textbf{" in text
    if shutil.which("pdflatex"):
        compile_latex(run["out"] / "leaderboard.tex", tmp_path)


def test_html_from_the_run_in_a_browser(run, tmp_path):
    page = parse_html((run["out"] / "leaderboard.html").read_text())
    provenance = page.tables["provenance"]
    assert len(provenance) - 1 == len(run["records"])
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("/usr/bin/chromium is absent (apt-get install -y chromium chromium-driver)")
    driver = start_browser(tmp_path / "profile")
    try:
        open_page(driver, run["out"] / "leaderboard.html")
        assert console_errors(driver) == []
        driver.find_element("css selector", "#records > summary").click()  # unfold it
        assert_sorts(driver, "provenance", "seed", must_change=False)
        assert_sorts(driver, "board-0", "train s", must_change=False)
        assert console_errors(driver) == []
        shot = tmp_path / "run.png"
        assert driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
    finally:
        driver.quit()


def test_one_latency_measurement_per_architecture_shown_on_every_row(run):
    """Every method of a student trains one network: one cost file per student, and
    every row of that student shows its figures."""
    costs = {p.stem: json.loads(p.read_text()) for p in (run["results"] / "costs").glob("*.json")}
    teachers = {r["arch_cost"]["teacher"]["key"] for r in run["records"] if r["config"]["teacher"]}
    assert len(teachers) == 1 and len(costs) == len(STUDENTS) + 1  # one teacher, shared
    by_student: dict[str, set[str]] = {}
    for record in run["records"]:
        ref = record["arch_cost"]["student"]
        assert ref["file"] == f"costs/{ref['key']}.json" and "latency" not in record
        by_student.setdefault(label(record["config"]["student"]), set()).add(ref["key"])
    assert all(len(keys) == 1 for keys in by_student.values())
    assert {next(iter(k)) for k in by_student.values()} | teachers == set(costs)
    rows = list(csv.DictReader(io.StringIO((run["out"] / "leaderboard.csv").read_text())))
    for student, (key,) in by_student.items():
        cost = costs[key]
        assert cost["latency"]["batch1_calls"] > 0 and cost["latency"]["batch1_iqr_ms"] >= 0
        mine = [r for r in rows if r["student"] == student]
        assert len(mine) > 1
        assert {float(r["p50_ms"]) for r in mine} == {cost["latency"]["batch1_p50_ms"]}
        assert {float(r["throughput_img_s"]) for r in mine} == {cost["latency"]["throughput_img_s"]}
        assert {r["cost_measurements"] for r in mine} == {"1"}


def test_records_from_two_machines_are_merged_and_duplicates_named(run, tmp_path):
    """A second 'machine' holding one of the same cells: counted once, both paths named."""
    other = tmp_path / "machine_b" / "records"
    other.mkdir(parents=True)
    victim = sorted((run["results"] / "records").glob("*.json"))[0]
    shutil.copy(victim, other / victim.name)
    done = kdbench(
        "report",
        str(run["results"]),
        str(other.parent),
        str(run["results"] / "records"),  # the same folder again: not a duplicate
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (warning,) = [ln for ln in done.stderr.splitlines() if "duplicate record" in ln]
    assert str(victim) in warning and str(other / victim.name) in warning
    assert "same status and metrics in both" in warning
    data = json.loads(done.stdout)
    assert len(data["provenance"]) == len(run["records"])
