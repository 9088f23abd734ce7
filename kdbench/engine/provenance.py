"""What produced a number: versions, git state, device and host facts."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import cache
from pathlib import Path

import torch

from kdbench.engine.measure import device_name


@cache
def git_state(folder: str) -> dict[str, str | bool | None]:
    """The git commit of ``folder`` and whether its work tree is dirty (None outside git).

    Read-only: ``git status`` otherwise refreshes and rewrites ``.git/index`` (racing a
    user's own git commands in the benchmark's repository), so optional locks are off.
    """
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", "-C", folder, *args],
                capture_output=True,
                text=True,
                timeout=10,
                env=env,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if sha else None
    return {"sha": sha, "dirty": dirty}


def provenance(
    *,
    device: torch.device,
    plugin_versions: dict[str, str],
    source_dir: Path,
    plugin_problems: list[str] | None = None,
) -> dict[str, object]:
    """The facts behind a record; ``plugin_problems`` (skipped plugins, disabled names)
    only when there were any, since a plugin that did not load can change what ran."""
    from kdbench import __version__

    problems = {"plugin_problems": plugin_problems} if plugin_problems else {}
    return problems | {
        "kdbench": __version__,
        "git": git_state(str(source_dir)),
        "plugins": plugin_versions,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
