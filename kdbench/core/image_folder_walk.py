"""Class folders and image files of an ``ImageFolder`` tree, found without loops or leaks.

torchvision's ``ImageFolder`` follows every symbolic link: a ``loop -> ..`` link inside
a class folder walks the whole tree again under that class (40 images became 1,640,
1,600 of them mislabelled), and a link can pull in files from anywhere. Its classes and
files also include hidden entries (``.cache/``, ``._photo.jpg`` from macOS).

:class:`FolderWalk` finds the same classes and files, in the same order, as torchvision's
for a tree without links or hidden entries, with three rules:

- names starting with ``.`` are neither classes nor samples, and hidden folders are not
  entered;
- a symbolic link (to a file or a folder) is followed only when its target, resolved,
  lies inside ``inside`` (the dataset's root); others are counted, not followed;
- a folder is walked at most once: a link to a folder of the split's own tree, to one of
  its ancestors or to a folder walked already is counted, not followed.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

__all__ = ["FolderWalk"]

_WORDS = {
    "hidden": ("hidden entry", "hidden entries"),
    "outside": ("link out of the root", "links out of the root"),
    "revisit": ("link to a folder walked already", "links to folders walked already"),
}


@dataclass
class FolderWalk:
    """One split's walk: ``classes()``, then ``samples(classes)``; ``skipped`` counts why."""

    top: Path
    inside: Path
    extensions: tuple[str, ...]
    skipped: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.inside = self.inside.resolve()
        self._top = self.top.resolve()
        self._visited: set[Path] = set()

    @cached_property
    def _own(self) -> set[Path]:
        """The split's own folders, entered by their real paths only; listed at the first
        link to a folder, so a tree without such links is walked once."""
        return _real_folders(self._top)

    def classes(self) -> list[str]:
        """The class folders' names, sorted (links followed under the rules above)."""
        found = []
        with os.scandir(self.top) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    self.skipped["hidden"] += 1
                elif entry.is_symlink():
                    if self._follow(Path(entry.path)) and Path(entry.path).is_dir():
                        found.append(entry.name)
                elif entry.is_dir():
                    found.append(entry.name)
        return sorted(found)

    def samples(self, classes: list[str]) -> list[tuple[str, int]]:
        """``(path relative to top, class index)`` of every image, in torchvision's order."""
        samples = []
        for label, name in enumerate(classes):
            folders: list[tuple[str, list[str]]] = []
            folder = self.top / name
            if folder.is_dir() and (not folder.is_symlink() or self._follow(folder)):
                self._folder(folder, folders)
            for folder, names in sorted(folders):
                for file in sorted(names):
                    samples.append((os.path.relpath(os.path.join(folder, file), self.top), label))
        return samples

    def note(self) -> str:
        """What was left out, for messages: ``2 hidden entries, 1 link out of the root``."""
        return ", ".join(
            f"{count} {_WORDS[reason][count > 1]}" for reason, count in sorted(self.skipped.items())
        )

    def _follow(self, link: Path) -> bool:
        """Whether to follow ``link``; if not, counted under its reason."""
        target = link.resolve()
        if not target.is_relative_to(self.inside):
            self.skipped["outside"] += 1
            return False
        if target.is_dir() and (
            target in self._own or target in self._visited or self._top.is_relative_to(target)
        ):
            self.skipped["revisit"] += 1
            return False
        return True

    def _folder(self, folder: Path, found: list[tuple[str, list[str]]]) -> None:
        real = folder.resolve()
        if real in self._visited:
            self.skipped["revisit"] += 1
            return
        self._visited.add(real)
        names: list[str] = []
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.name.startswith("."):
                    self.skipped["hidden"] += 1
                elif entry.is_symlink() and not self._follow(path):
                    continue
                elif entry.is_dir():
                    self._folder(path, found)
                elif entry.is_file() and entry.name.lower().endswith(self.extensions):
                    names.append(entry.name)
        found.append((str(folder), names))


def _real_folders(top: Path) -> set[Path]:
    """Every folder under ``top`` reached without a link, hidden ones not entered."""
    folders = set()
    for folder, dirs, _ in os.walk(top):
        dirs[:] = [
            d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(folder, d))
        ]
        folders.update(Path(folder, d) for d in dirs)
    return folders
