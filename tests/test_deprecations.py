"""Every import path the 0.1 docs showed still works, and warns where it moved.

The 0.2 layout moved modules into ``kdbench/core``, ``kdbench/records`` and
``kdbench/engine``. Each old path is a shim: it hands out the very objects of the new
module and warns with a ``DeprecationWarning`` that names the new path and the release
that removes the old one (docs/plugins.md, "API policy").
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from kdbench.core.deprecation import REMOVED_IN

REPO = Path(__file__).resolve().parents[1]

# (old module, name the docs showed, module that holds it now): every row of the
# "API policy" table in docs/plugins.md.
MOVED = [
    ("kdbench.functional", "stage_taps", "kdbench.core.functional"),
    ("kdbench.functional", "kd_kl", "kdbench.core.functional"),
    ("kdbench.features", "FeatureTaps", "kdbench.testing"),
    ("kdbench.identity", "experiment_id", "kdbench.records.identity"),
    ("kdbench.identity", "teacher_id", "kdbench.records.identity"),
    ("kdbench.record_schema", "Record", "kdbench.records.schema"),
    ("kdbench.record_schema", "json_schema", "kdbench.records.schema"),
    ("kdbench.records", "read_record", "kdbench.records.store"),
    ("kdbench.params", "Weight", "kdbench.core.params"),
    ("kdbench.hookspecs", "hookimpl", "kdbench.core.hookspecs"),
]
SHIMS = sorted({old for old, _, _ in MOVED} - {"kdbench.records"})


@pytest.mark.parametrize(("old", "name", "new"), MOVED, ids=lambda v: v)
def test_old_name_is_the_new_object_and_warns_naming_the_new_path(old, name, new):
    with pytest.warns(DeprecationWarning) as caught:
        namespace: dict[str, object] = {}
        exec(f"from {old} import {name}", namespace)  # the line a plugin wrote
    assert namespace[name] is getattr(importlib.import_module(new), name)
    messages = {str(w.message) for w in caught}
    assert messages == {
        f"{old}.{name} is deprecated and will be removed in {REMOVED_IN}; use {new}.{name}"
    }


def test_the_warning_points_at_the_line_that_used_the_old_name():
    """So ``python -W error`` and pytest's warning summary name the plugin's own file."""
    import kdbench.functional as old

    with pytest.warns(DeprecationWarning) as caught:
        old.stage_taps(["stage1", "pool"])
    assert [Path(w.filename) for w in caught] == [Path(__file__)]


@pytest.mark.parametrize("old", SHIMS)
def test_importing_a_shim_alone_does_not_warn(old):
    sys.modules.pop(old, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = importlib.import_module(old)
        assert module.__doc__ and "Deprecated" in module.__doc__  # dunders stay quiet


def test_a_name_the_new_module_lacks_is_an_attribute_error_without_a_warning():
    import kdbench.features
    import kdbench.functional

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="'kdbench.functional' has no attribute 'nope'"):
            kdbench.functional.nope  # noqa: B018
        # FeatureTaps moved to the testing kit; the kit's other names never lived here.
        with pytest.raises(AttributeError, match="'kdbench.features' has no attribute"):
            kdbench.features.check_loss  # noqa: B018


def test_the_records_package_still_imports_its_submodules_quietly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from kdbench.records import identity, schema, store

    assert store.read_record and schema.Record and identity.experiment_id


def test_python_m_record_schema_still_prints_the_json_schema():
    def run(module: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module], capture_output=True, text=True, check=True, cwd=REPO
        )

    old, new = run("kdbench.record_schema"), run("kdbench.records.schema")
    assert old.stdout == new.stdout == (REPO / "docs" / "record.schema.json").read_text()
    assert "DeprecationWarning" in old.stderr
    assert "use python -m kdbench.records.schema" in old.stderr
    assert new.stderr == ""


def _deprecated_imports(path: Path) -> list[str]:
    """``file:line`` of each import of a shim, or of a moved name from ``kdbench.records``."""
    submodules = {p.stem for p in (REPO / "kdbench" / "records").glob("*.py")}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            old = [a.name for a in node.names if a.name in SHIMS]
        elif isinstance(node, ast.ImportFrom) and node.module == "kdbench.records":
            old = [a.name for a in node.names if a.name not in submodules]
        else:
            old = [node.module] if isinstance(node, ast.ImportFrom) and node.module in SHIMS else []
        found += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in old]
    return found


def test_kdbench_and_its_plugins_use_only_the_new_paths():
    """The shims are for code outside this repository; nothing here leans on them."""
    sources = [*(REPO / "kdbench").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]
    shims = {REPO / "kdbench" / f"{m.split('.')[1]}.py" for m in SHIMS}
    assert len(sources) > 100
    found = [hit for path in sources if path not in shims for hit in _deprecated_imports(path)]
    assert found == []


def test_the_api_policy_table_lists_every_deprecated_path():
    """docs/plugins.md tells plugin authors what moved: the same paths this file checks."""
    text = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = text.split("\n## API policy\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `kdbench.")]
    listed = {line.split("`")[1] for line in rows}
    # Each row is an old module, or one name of it: together, every path checked here.
    covered = {f"{old}.{name}" for old, name, _ in MOVED}
    assert {
        path for path in covered if path in listed or path.rsplit(".", 1)[0] in listed
    } == covered
    assert all(any(path.startswith(entry) for path in covered) for entry in listed), listed
    for old, _, new in MOVED:
        row = next(line for line in rows if line.startswith(f"| `{old}"))
        assert f"`{new}`" in row or f"`{new}." in row, row
        assert row.endswith(f"| {REMOVED_IN} |"), row
