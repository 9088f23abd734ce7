"""Plugins written against the earlier docs still load and pass their checks, unchanged.

``tests/data/legacy_plugins/docs_<commit>/`` keeps, verbatim, the plugin examples of
docs/plugins.md, docs/losses.md and docs/models.md at two commits:

- ``925c2fc``: the docs just before the 0.2 layout moved ``kdbench/functional.py``,
  ``features.py``, ``identity.py``, ``record_schema.py`` and ``records.py`` into
  ``kdbench/core``, ``kdbench/engine`` and ``kdbench/records``;
- ``79eed4c``: the last docs whose examples used ``kdbench.features.FeatureTaps``.

Each runs as its author would: the example distribution's module is loaded through the
entry point its ``pyproject.toml`` declares and registered with kdbench's plugin manager
(no pip), the page's checks run, and its test functions are called. Deprecation
warnings naming the new paths are expected; any error fails.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import runpy
import sys
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from kdbench.core.plugins import call_each, make_plugin_manager
from kdbench.core.registry import Registry
from kdbench.testing import check_loss, check_model

LEGACY = Path(__file__).resolve().parent / "data" / "legacy_plugins"
COMMITS = ["925c2fc", "79eed4c"]
DEPRECATED = "is deprecated and will be removed in"


@pytest.fixture
def fresh_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Modules the legacy code imports are forgotten afterwards: the two example
    distributions share the name ``my_loss_pkg``."""
    before = set(sys.modules)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("my_loss_pkg", "legacy_")):
            del sys.modules[name]


def deprecations(caught: list[warnings.WarningMessage]) -> set[str]:
    return {str(w.message) for w in caught if DEPRECATED in str(w.message)}


def load_distribution(folder: Path) -> tuple[dict[str, ModuleType], Registry]:
    """The distribution's ``kdbench`` entry points, loaded and registered as kdbench's
    plugin loader does; the registry they fill."""
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    sys.path.insert(0, str(folder / "src"))
    pm = make_plugin_manager()
    modules = {}
    for name, value in project["entry-points"]["kdbench"].items():
        modules[name] = md.EntryPoint(name, value, "kdbench").load()
        pm.register(modules[name], name=name)
    pm.check_pending()  # every hook it implements is one kdbench defines
    registry = Registry()
    assert call_each(pm, "register_losses", lambda p: registry.registrar("losses", p)) == []
    return modules, registry


def load_module(path: Path) -> ModuleType:
    """A plugin module given as a file, imported as a real module (its classes pickle)."""
    name = f"legacy_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def call_tests(path: Path) -> list[str]:
    """Call every ``test_*`` function of a test file, as pytest would; their names."""
    namespace = runpy.run_path(str(path))
    names = sorted(n for n, f in namespace.items() if n.startswith("test_") and callable(f))
    for name in names:
        namespace[name]()
    return names


@pytest.mark.parametrize("commit", COMMITS)
def test_the_loss_distribution_loads_registers_and_passes_its_tests(commit, fresh_imports):
    folder = LEGACY / f"docs_{commit}" / "kdbench-mimic"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        modules, registry = load_distribution(folder)
        mimic = registry.get("losses", "mimic").obj
        assert mimic is modules["my_loss"].Mimic
        terms = check_loss(mimic, {"weight": 2.0})
        ran = call_tests(folder / "tests" / "test_mimic.py")
    assert set(terms) == {"ce", "mimic"} and terms["mimic"] > 0
    assert len(ran) == 1
    moved = {"kdbench.functional.stage_taps": "kdbench.core.functional.stage_taps"}
    if commit == "79eed4c":  # its test captured the taps itself
        moved["kdbench.features.FeatureTaps"] = "kdbench.testing.FeatureTaps"
    assert deprecations(caught) == {
        f"{old} {DEPRECATED} 0.3.0; use {new}" for old, new in moved.items()
    }


@pytest.mark.parametrize("commit", COMMITS)
def test_the_model_plugin_module_registers_and_its_taps_check_out(commit, fresh_imports, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = load_module(LEGACY / f"docs_{commit}" / "models_md.py")
        pm = make_plugin_manager()
        pm.register(module, name="tiny_models")
        pm.check_pending()
        registry = Registry()
        assert call_each(pm, "register_models", registry.model_registrar) == []
        tiny = registry.get("students", "tiny")
        assert registry.get("teachers", "tiny").obj is module.tiny
        shapes = check_model(tiny.obj, taps=tiny.taps_for(tiny.obj(10, 3)))
    assert shapes == {
        "stage1": (16, 32, 32),
        "stage1_pre": (16, 32, 32),
        "stage2": (32, 16, 16),
        "stage2_pre": (32, 16, 16),
        "pool": (32,),
    }
    if commit == "79eed4c":  # the page printed the taps FeatureTaps collected
        printed = capsys.readouterr().out
        assert printed.strip() == str({f"{k}": (2, *v) for k, v in shapes.items()})
        assert deprecations(caught) == {
            f"kdbench.features.FeatureTaps {DEPRECATED} 0.3.0; use kdbench.testing.FeatureTaps"
        }
    else:
        assert deprecations(caught) == set()


def test_the_plugin_guide_examples_run(fresh_imports):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        namespace = runpy.run_path(str(LEGACY / "docs_925c2fc" / "plugins_md.py"))
    # Each block ends in its own assertions; what they computed, checked once more.
    assert set(namespace["terms"]) == {"ce", "kd"}
    assert namespace["shapes"] == {"stage1": (8, 32, 32), "stage2": (16, 16, 16), "pool": (16,)}
    assert deprecations(caught) == {
        f"kdbench.functional.stage_taps {DEPRECATED} 0.3.0; use kdbench.core.functional.stage_taps"
    }
