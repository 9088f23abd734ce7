"""Plugin loading: real distributions installed with pip, broken ones, name clashes."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest

from conftest import write_benchmark
from kdbench.core.errors import ConfigError
from kdbench.core.hookspecs import hookimpl
from kdbench.core.plugins import load_plugins, make_plugin_manager
from kdbench.core.registry import Entry, Registry

REPO = Path(__file__).resolve().parents[1]


def pip_install(source: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
    )  # fmt: skip


def kdbench(*args: str, site: Path, cwd: Path, strict: bool = False):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("KDBENCH_STRICT_PLUGINS", None)
    if strict:
        env["KDBENCH_STRICT_PLUGINS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "kdbench", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def make_distribution(
    folder: Path,
    name: str,
    module_body: str,
    *,
    files: dict[str, str] | None = None,
    dependencies: tuple[str, ...] = (),
    group: str = "kdbench",
) -> Path:
    """A minimal plugin distribution written on the fly: its package's ``__init__.py``
    is ``module_body``, ``files`` adds modules beside it, ``dependencies`` goes into its
    metadata (Requires-Dist) and the package is the entry point of ``group``."""
    module = name.replace("-", "_")
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(textwrap.dedent(module_body))
    for file, body in (files or {}).items():
        (folder / module / file).write_text(textwrap.dedent(body))
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "9.9.9"
        dependencies = {list(dependencies)!r}
        [project.entry-points."{group}"]
        {module} = "{module}"
        [tool.setuptools]
        packages = ["{module}"]
        """)
    )
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example loss distribution pip-installed into a private site folder."""
    target = tmp_path_factory.mktemp("site")
    # Install from a copy: building in place would leave an egg-info on pytest's path.
    source = tmp_path_factory.mktemp("src") / "kdbench-example-loss"
    shutil.copytree(REPO / "plugins" / "kdbench-example-loss", source)
    pip_install(source, target)
    return target


def test_installed_distribution_is_found_through_its_entry_point(site, tmp_path):
    listing = kdbench("plugins", site=site, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    line = next(row for row in listing.stdout.splitlines() if row.startswith("example_loss"))
    assert "kdbench-example-loss" in line and "built-in" not in line
    assert "losses: logit_mse" in line
    losses = kdbench("list", "losses", site=site, cwd=tmp_path)
    assert "logit_mse" in losses.stdout and "beta=1.0" in losses.stdout


def test_third_party_loss_runs_in_a_benchmark(site, tmp_path):
    bench = write_benchmark(tmp_path)
    bench.write_text(
        bench.read_text().replace("[losses.kd]\ntemperature = 4.0", "[losses.logit_mse]")
    )
    result = kdbench("run", str(bench), "--out", str(tmp_path / "out"), "--quiet", site=site,
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "logit_mse" in result.stdout
    records = list((tmp_path / "out" / "records").glob("*.json"))
    assert len(records) == 4


def test_broken_plugin_is_reported_and_skipped_or_fatal_when_strict(site, tmp_path):
    source = make_distribution(
        tmp_path / "src", "kdbench-broken", "raise ImportError('no wheels here')"
    )
    pip_install(source, site)
    try:
        result = kdbench("plugins", site=site, cwd=tmp_path)
        assert result.returncode == 0
        assert "kdbench_broken" in result.stderr and "no wheels here" in result.stderr
        assert "example_loss" in result.stdout  # the others still load
        # The warning is one line of kdbench's, not Python's "file:line: UserWarning: ...".
        assert result.stderr.splitlines() == [
            "kdbench: plugin 'kdbench_broken' (kdbench-broken) failed to load and is skipped: "
            "ImportError: no wheels here"
        ]
        unknown = kdbench("show", "loss", "logit_mze", site=site, cwd=tmp_path)
        assert unknown.returncode == 2
        error = unknown.stderr.splitlines()[-1]
        assert error.startswith(
            "kdbench: error: loss: unknown loss 'logit_mze' (did you mean 'logit_mse'?); "
        )
        assert error.endswith(
            "; plugin 'kdbench_broken' (kdbench-broken) failed to load, which may provide it"
        )
        strict = kdbench("plugins", site=site, cwd=tmp_path, strict=True)
        assert strict.returncode == 2
        assert "plugin 'kdbench_broken' (kdbench-broken) failed to load" in strict.stderr
    finally:
        for path in site.glob("kdbench_broken*"):
            shutil.rmtree(path)


def test_a_name_registered_twice_keeps_the_first_and_names_both_plugins():
    registry = Registry()
    registry.registrar("losses", "first")("kd", object)
    registry.registrar("losses", "second")("kd", int)
    assert registry.get("losses", "kd").plugin == "first"
    (clash,) = registry.clashes
    assert clash.message({"second": "kdbench-second"}) == (
        "loss 'kd' is registered twice: by plugin 'first' and by plugin 'second' "
        "(kdbench-second); the second is disabled"
    )


def test_misspelt_hook_is_caught():
    class Plugin:
        @hookimpl
        def register_loses(self, register):  # typo on purpose
            pass

    pm = make_plugin_manager()
    pm.register(Plugin())
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_parameters_come_from_the_signature():
    def factory(num_classes, in_channels, *, width: int = 8, depth: int):
        """A model."""

    entry = Entry("students", "m", factory, "p", "A model.")
    assert list(entry.params) == ["width", "depth"]
    with pytest.raises(ConfigError, match="needs parameter\\(s\\) depth"):
        entry.check_params({"width": 3}, file="f.toml", key="pairs[0].student_params")


def test_versions_names_each_installed_plugin_with_its_distributions_version():
    """``Plugins.versions()`` is public (kdbench.core): the timm plugin, pip-installed with
    the test extras, appears with the version its distribution's metadata gives."""
    plugins = load_plugins(strict=False)
    versions = plugins.versions()
    timm = next(info for info in plugins.infos if info.source == "kdbench-timm")
    assert versions[timm.name] == importlib.metadata.version("kdbench-timm")
