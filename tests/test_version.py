"""kdbench's version has one source, pyproject.toml, read through the installed metadata."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import tomllib
from pathlib import Path

from click.testing import CliRunner

import kdbench
from kdbench.cli import cli
from kdbench.cli.scaffold import new_plugin

REPO = Path(__file__).resolve().parents[1]


def test_the_version_is_pyprojects_as_installed():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert kdbench.__version__ == md.version("kdbench") == declared
    result = CliRunner().invoke(cli, ["--version"], prog_name="kdbench")
    assert result.exit_code == 0 and result.output == f"kdbench, version {declared}\n"


def test_a_source_tree_that_was_never_installed_says_its_version_is_unknown():
    code = (
        "import importlib.metadata as md\n"
        "def version(name):\n"
        "    raise md.PackageNotFoundError(name)\n"
        "md.version = version\n"
        "import kdbench\n"
        "print(kdbench.__version__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout == "0+unknown\n"


def kdbench_requirements(folder: Path) -> list[str]:
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    return [dep for dep in project["dependencies"] if dep.startswith("kdbench")]


def test_new_and_bundled_plugins_declare_this_minor_series(tmp_path: Path):
    """A plugin says which kdbench it was written against (docs/plugins.md, "API
    policy"): a scaffold the running minor series, the bundled plugins the same."""
    major, minor = (int(part) for part in kdbench.__version__.split(".")[:2])
    series = f"kdbench>={major}.{minor},<{major}.{minor + 1}"
    scaffold = new_plugin("loss", "soft", tmp_path) / "pyproject.toml"
    folders = [scaffold.parent, *(REPO / "plugins").glob("kdbench-*")]
    declared = {folder.name: kdbench_requirements(folder) for folder in folders}
    assert len(declared) == 4
    assert declared == {name: [series] for name in declared}
