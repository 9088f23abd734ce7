"""Every Python example in docs/ runs, and uses only the public API.

The ```python blocks of one page run in order in one namespace, and every ``test_*``
function they define is called. A block right after ``<!-- file: PATH -->`` is a file
of the example distribution: it is written to PATH under a temporary folder (``src/``
importable) instead of run, unless PATH is a test, which also runs.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\n)?```python\n(?P<code>.*?)```", re.S)
PUBLIC = (
    "kdbench", "kdbench.core.functional", "kdbench.reports", "kdbench.testing", "kdbench.trackers",
)  # fmt: skip
IMPORT = re.compile(r"^\s*(?:from|import)\s+(kdbench[\w.]*)", re.M)


def blocks(page: Path) -> list[tuple[str | None, str]]:
    return [(m["file"], m["code"]) for m in BLOCK.finditer(page.read_text(encoding="utf-8"))]


PAGES = sorted(p for p in DOCS.glob("*.md") if blocks(p))


def test_the_docs_have_examples_to_run():
    assert {p.name for p in PAGES} >= {"plugins.md", "losses.md", "models.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_import_only_the_public_api(page: Path):
    for _, code in blocks(page):
        for module in IMPORT.findall(code):
            assert module in PUBLIC, f"{page.name} imports {module}; use {', '.join(PUBLIC)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    before = set(sys.modules)
    # A real module, so the examples' classes pickle as a plugin's would.
    module = types.ModuleType(f"docs_{page.stem}")
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    ran = 0
    try:
        for file, code in blocks(page):
            if file is not None:
                path = tmp_path / file
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(code, encoding="utf-8")
                if not file.startswith("tests/"):
                    continue
            exec(compile(code, f"{page.name}:{file or 'block'}", "exec"), namespace)
            ran += 1
        tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
        for test in tests:
            test()
    finally:
        for name in set(sys.modules) - before:  # the example's own modules, not kdbench's
            if not name.startswith(("kdbench", "torch")):
                sys.modules.pop(name, None)
    assert ran > 0
