"""The command line starts without torch: help, report and schema answer at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: this test process has imported torch long ago.
PROBE = """
import json, sys
from click.testing import CliRunner
from kdbench.cli import cli
seen = {}
for args in (["--help"], ["report", "--help"], ["schema"],
             ["report", "results/fashion_mnist", "--no-reference", "--format", "md"]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (args, result.output)
    seen[" ".join(args[:2])] = sorted(m for m in ("torch", "matplotlib") if m in sys.modules)
print(json.dumps(seen))
"""


def test_help_report_and_schema_import_neither_torch_nor_matplotlib():
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    seen = json.loads(probe.stdout)
    assert len(seen) == 4
    assert seen == {key: [] for key in seen}, seen


def test_help_starts_in_well_under_the_time_torch_takes_to_import():
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kdbench", "--help"], cwd=REPO, check=True,
                   capture_output=True)  # fmt: skip
    seconds = time.perf_counter() - start
    assert seconds < 5.0  # about 0.2 s on an idle CPU; importing torch alone takes seconds
