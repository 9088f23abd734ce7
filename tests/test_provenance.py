"""Provenance that tells the truth: ``git`` is kdbench's own commit wherever the command
runs, ``benchmark_git`` the benchmark file's repository, and each plugin names its
distribution and version."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import kdbench
from kdbench.engine.cell import run_cell
from kdbench.engine.context import RunContext
from kdbench.engine.job import CellJob
from kdbench.engine.provenance import git_state, package_git, provenance
from kdbench.engine.runner import plan
from kdbench.records.schema import Record

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

KDBENCH_PACKAGE = Path(kdbench.__file__).resolve().parent


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=k@d", "-c", "user.name=kd", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def repository(folder: Path, files: dict[str, str]) -> str:
    """A new repository holding ``files``, committed; its HEAD."""
    folder.mkdir(parents=True, exist_ok=True)
    git(folder, "init", "-q")
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        git(folder, "add", name)
    git(folder, "commit", "-qm", "files")
    return git(folder, "rev-parse", "HEAD")


@pytest.fixture
def kdbench_head() -> str:
    head = git(KDBENCH_PACKAGE, "rev-parse", "HEAD") if _tracked() else None
    if head is None:
        pytest.skip("kdbench is not installed from a git checkout")
    return head


def _tracked() -> bool:
    done = subprocess.run(
        ["git", "-C", str(KDBENCH_PACKAGE), "ls-files", "--error-unmatch", "__init__.py"],
        capture_output=True,
    )
    return done.returncode == 0


def test_a_record_names_kdbench_commit_and_the_benchmark_repository_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kdbench_head: str
):
    from conftest import TINY

    bench_head = repository(tmp_path / "bench", {"tiny.toml": TINY.format(extra_pairs="")})
    repository(tmp_path / "elsewhere", {"notes.txt": "the command runs from here\n"})
    monkeypatch.chdir(tmp_path / "elsewhere")  # another repository than either
    git_state.cache_clear()
    package_git.cache_clear()
    context = RunContext()
    cells = plan(tmp_path / "bench" / "tiny.toml", context).cells
    [cell] = [c for c in cells if c.loss.label == "ce" and c.seed == 0]
    job = CellJob(cell=cell, device="cpu", source_dir=str(tmp_path / "bench"))
    record = run_cell(job, context)
    assert record["status"] == "ok", record.get("error")
    prov = Record.model_validate(record).provenance
    assert prov is not None and prov.git is not None and prov.benchmark_git is not None
    # kdbench's HEAD then (or a commit made to it meanwhile): never the other repositories'
    after = git(KDBENCH_PACKAGE, "rev-parse", "HEAD")
    for older, newer in ((kdbench_head, prov.git.sha), (prov.git.sha, after)):
        git(KDBENCH_PACKAGE, "merge-base", "--is-ancestor", older, newer)  # raises if not
    assert prov.benchmark_git.sha == bench_head and prov.benchmark_git.dirty is False
    assert prov.git.sha != bench_head
    assert record["provenance"]["plugins"]["losses_basic"] == {
        "distribution": "kdbench",
        "version": kdbench.__version__,
    }


def test_every_plugin_entry_names_its_distribution_and_version():
    from kdbench.core.plugins import PluginInfo

    infos = [
        PluginInfo("losses_logit", "0.2.0", "built-in"),
        PluginInfo("timm", "1.4.0", "kdbench-timm"),
    ]
    prov = provenance(device=torch.device("cpu"), plugins=infos, source_dir=Path("/"))
    assert prov["plugins"] == {
        "losses_logit": {"distribution": "kdbench", "version": "0.2.0"},
        "timm": {"distribution": "kdbench-timm", "version": "1.4.0"},
    }
    assert prov["benchmark_git"] == {"sha": None, "dirty": None}  # / is in no repository


def test_a_package_only_lying_inside_a_repository_has_no_commit(tmp_path: Path):
    """An installed copy in a virtual environment under some project's repository is not
    that project's source: the repository must track the package itself."""
    head = repository(tmp_path / "project", {".gitignore": "venv/\n", "src/pkg/__init__.py": ""})
    installed = tmp_path / "project" / "venv" / "site-packages" / "pkg"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("", encoding="utf-8")
    package_git.cache_clear()
    assert package_git(str(installed)) == {"sha": None, "dirty": None}
    assert package_git(str(tmp_path / "project" / "src" / "pkg")) == {"sha": head, "dirty": False}
