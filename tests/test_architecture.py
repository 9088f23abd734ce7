"""The layers' walls hold: the import-linter contracts in pyproject.toml all pass.

The CLI sits over reporting and the engine, which never import each other, over the
records, over the core; built-in plugins import only the public API; reporting and the
records import no torch; the executor API loads no plugins (no import cycle through
the plugin manager). ``python -m pytest`` enforces them, not only a CI step.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parents[1]


def test_every_import_contract_is_kept(capsys):
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    # layers, built-ins, the testing kit, reporting, records, executors
    assert len(contracts["contracts"]) == 6
    code = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "6 kept, 0 broken" in report


def test_every_module_the_architecture_map_names_exists():
    """docs/architecture.md points maintainers at modules: a rename must update it."""
    import importlib.util
    import re

    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    spans = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    named = {name for span in spans for name in re.findall(r"\bkdbench(?:\.\w+)+", span)}
    assert len(named) >= 40  # the map names the modules, not a handful
    missing = sorted(name for name in named if importlib.util.find_spec(name) is None)
    assert missing == [], f"docs/architecture.md names modules that do not exist: {missing}"
