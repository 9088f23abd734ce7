"""The command line starts without torch: help, report, schema and status answer at once.

Run with ``-s`` to see the measured seconds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: this test process has imported torch long ago.
PROBE = """
import json, sys
from click.testing import CliRunner
from kdbench.cli import cli
seen = {}
for args in (["--help"], ["report", "--help"], ["schema"],
             ["report", "results/fashion_mnist", "--no-reference", "--format", "md"],
             ["status", sys.argv[1]]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (args, result.output)
    heavy = ("torch", "matplotlib", "scipy.stats")  # scipy.stats alone takes half a second
    seen[" ".join(args[:2])] = sorted(m for m in heavy if m in sys.modules)
print(json.dumps(seen))
"""


def records_only(tmp_path: Path) -> Path:
    """A results folder with the committed records but no benchmark file to plan from.

    With a benchmark file ``status`` plans the matrix, which loads the plugins and so
    torch; from the records alone it needs neither.
    """
    folder = tmp_path / "results"
    shutil.copytree(REPO / "results" / "fashion_mnist" / "records", folder / "records")
    return folder


def test_help_report_schema_and_status_import_no_torch_matplotlib_or_scipy_stats(tmp_path: Path):
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(records_only(tmp_path))],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    seen = json.loads(probe.stdout)
    assert len(seen) == 5
    assert seen == {key: [] for key in seen}, seen


STATUS_PROBE = """
import json, sys
from click.testing import CliRunner
from kdbench.cli import cli
result = CliRunner().invoke(cli, ["status", sys.argv[1]])
print(json.dumps([result.exit_code, result.output, "torch" in sys.modules]))
"""


def test_status_asks_the_noted_slurm_executor_for_its_jobs_without_torch(tmp_path: Path):
    from kdbench.builtin.executors_slurm import JOBS_FILE, SlurmExecutor
    from kdbench.records.executor_note import ExecutorNote, write_executor_note

    folder = records_only(tmp_path)
    write_executor_note(folder, ExecutorNote.of("slurm", {}, SlurmExecutor))
    job = {"cell_ids": ["c"], "labels": ["a cell"], "cluster": "local", "since": "-"}
    (folder / "slurm").mkdir()
    (folder / "slurm" / JOBS_FILE).write_text(json.dumps({"999999999": job}))
    probe = subprocess.run(
        [sys.executable, "-c", STATUS_PROBE, str(folder)],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    code, output, torch_loaded = json.loads(probe.stdout)
    assert code == 0, output
    assert "slurm job" in output and "999999999" in output and "a cell" in output
    assert not torch_loaded


def test_help_starts_in_well_under_the_time_torch_takes_to_import():
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kdbench", "--help"], cwd=REPO, check=True,
                   capture_output=True)  # fmt: skip
    seconds = time.perf_counter() - start
    assert seconds < 5.0  # about 0.2 s on an idle CPU; importing torch alone takes seconds


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["report", "results/fashion_mnist", "--no-reference", "--format", "md"],
        ["status", "RECORDS"],
    ],
    ids=["help", "report", "status"],
)
def test_command_starts_and_answers_in_under_three_seconds(args: list[str], tmp_path: Path):
    """Each well under a second on an idle CPU; the bound leaves room for a busy one."""
    args = [str(records_only(tmp_path)) if a == "RECORDS" else a for a in args]
    timings = []
    for _ in range(2):  # the better of two: a fresh interpreter each, disk cache warm
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kdbench", *args], cwd=REPO, check=True,
                       capture_output=True)  # fmt: skip
        timings.append(time.perf_counter() - start)
    print(f"kdbench {args[0]}: {min(timings):.2f} s")
    assert min(timings) < 3.0


def test_status_of_a_run_folder_counts_pending_cells_from_the_run_without_torch(tmp_path: Path):
    """The run notes the cells it planned; status plans again only if the file changed."""
    from click.testing import CliRunner

    from conftest import write_benchmark
    from kdbench.cli import cli

    bench = write_benchmark(tmp_path)
    text = bench.read_text().replace("seeds = [0, 1]", "seeds = [0]")
    bench.write_text(text.replace("epochs = 3", "epochs = 1"))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    first = sorted((out / "records").glob("*.json"))[0]
    first.unlink()  # one cell pending again

    def probe() -> tuple[int, str, bool]:
        done = subprocess.run(
            [sys.executable, "-c", STATUS_PROBE, str(out)],
            cwd=REPO, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return tuple(json.loads(done.stdout))

    code, output, torch_loaded = probe()
    assert code == 0, output
    assert not torch_loaded
    assert ": 2 cells" in output and re.search(r"pending +1\n", output), output
    # an edited benchmark file is planned again (two seeds now: three cells pending)
    copied = out / "benchmark.toml"
    copied.write_text(copied.read_text().replace("seeds = [0]", "seeds = [0, 1]"))
    code, output, torch_loaded = probe()
    assert code == 0, output
    assert torch_loaded
    assert ": 4 cells" in output and re.search(r"pending +3\n", output), output
