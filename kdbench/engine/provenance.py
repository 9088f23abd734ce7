"""What produced a number: versions, git state, device and host facts.

Two commits are told apart: ``git`` is kdbench's own source (when kdbench runs from a
git checkout), ``benchmark_git`` the repository holding the benchmark file (when it is
in one); each plugin is named with its distribution and version.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import torch

from kdbench.core.plugins import PluginInfo
from kdbench.engine.measure import device_name


@cache
def git_state(folder: str) -> dict[str, str | bool | None]:
    """The git commit of ``folder`` and whether its work tree is dirty (None outside git).

    Read-only: ``git status`` otherwise refreshes and rewrites ``.git/index`` (racing a
    user's own git commands in the benchmark's repository), so optional locks are off.
    """
    sha = _git(folder, "rev-parse", "HEAD")
    dirty = bool(_git(folder, "status", "--porcelain", "--untracked-files=no")) if sha else None
    return {"sha": sha, "dirty": dirty}


def _git(folder: str, *args: str) -> str | None:
    """``git -C folder args``'s output, read-only; None when git fails or is missing."""
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", folder, *args],
            capture_output=True,
            text=True,
            timeout=10,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def kdbench_git() -> dict[str, str | bool | None]:
    """The git state of kdbench's own source: the checkout it runs from (editable install)."""
    return package_git(str(Path(__file__).resolve().parents[1]))


@cache
def package_git(package: str) -> dict[str, str | bool | None]:
    """The git state of the repository that tracks the Python package in ``package``.

    Only a repository tracking the package's ``__init__.py`` counts: an installed copy in
    a virtual environment that happens to lie inside some other repository has no commit.
    """
    if _git(package, "ls-files", "--error-unmatch", "__init__.py") is None:
        return {"sha": None, "dirty": None}
    return git_state(package)


def plugin_sources(infos: Iterable[PluginInfo]) -> dict[str, dict[str, str]]:
    """Each loaded plugin's distribution and version (a built-in one's is kdbench)."""
    return {
        info.name: {
            "distribution": "kdbench" if info.source == "built-in" else info.source,
            "version": info.version,
        }
        for info in infos
    }


def provenance(
    *,
    device: torch.device,
    plugins: Iterable[PluginInfo],
    source_dir: Path,
    plugin_problems: list[str] | None = None,
) -> dict[str, object]:
    """The facts behind a record; ``source_dir`` is the benchmark file's folder.

    ``plugin_problems`` (skipped plugins, disabled names) only when there were any,
    since a plugin that did not load can change what ran.
    """
    from kdbench import __version__

    problems = {"plugin_problems": plugin_problems} if plugin_problems else {}
    return problems | {
        "kdbench": __version__,
        "git": kdbench_git(),
        "benchmark_git": git_state(str(source_dir)),
        "plugins": plugin_sources(plugins),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
