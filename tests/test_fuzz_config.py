"""Fuzzing ``kdbench validate``: whatever the file holds, it exits 0 or 2, never a traceback.

Files are made from a valid benchmark by mutating it along its own keys (wrong types,
out-of-range numbers, unknown keys, deleted keys) or are random bytes. Integers stay
small or overflow outright: a valid width of millions would make validation build a
model of that size, which is a memory question, not a validation one.
"""

from __future__ import annotations

import json
import math
import tempfile
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kdbench.cli.app
from conftest import TINY
from kdbench.cli import cli
from kdbench.core.plugins import load_plugins
from kdbench.engine.context import RunContext

BASE = tomllib.loads(
    TINY.format(extra_pairs="")
    + '\n[losses.dkd]\nbeta = 8.0\n[losses.fitnets]\n[executor]\nname = "local"\n'
    "params = { threads = 1 }\n"
)

scalars = st.one_of(
    st.booleans(),
    st.integers(-5, 100),
    st.sampled_from([2**63, -(2**63), 10**100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=6), scalars, max_size=2),
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a parsed TOML document (list items by index)."""
    found = [prefix] if prefix else []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, child in items:
        found += paths(child, (*prefix, key))
    return found


def mutated(document: dict, path: tuple, action: str, value: Any, unknown: str) -> dict:
    document = json.loads(json.dumps(document))  # a deep copy
    *parents, last = path
    node = document
    for key in parents:
        node = node[key]
    if action == "set":
        node[last] = value
    elif action == "delete":
        del node[last]
    elif isinstance(node[last], dict):  # "add": an unknown key beside the known ones
        node[last][unknown] = value
    else:
        node[last] = {unknown: value}
    return document


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(document: dict) -> str:
    """Top-level scalars and arrays first, then each table with inline values."""
    lines = [
        f"{json.dumps(k)} = {toml_value(v)}" for k, v in document.items() if not isinstance(v, dict)
    ]
    for key, table in document.items():
        if isinstance(table, dict):
            lines.append(f"[{json.dumps(key)}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@st.composite
def benchmark_files(draw) -> bytes:
    kind = draw(st.sampled_from(["set", "set", "delete", "add", "valid", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "valid":
        return to_toml(BASE).encode()
    path = draw(st.sampled_from(paths(BASE)))
    value = draw(values)
    unknown = draw(st.text(min_size=1, max_size=8))
    return to_toml(mutated(BASE, path, kind, value, unknown)).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def context_factory():
    plugins = load_plugins()
    return lambda: RunContext(plugins=plugins)


def test_serializer_round_trips_the_base_file():
    assert tomllib.loads(to_toml(BASE)) == BASE


@settings(
    max_examples=100,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(content=benchmark_files())
def test_validate_exits_0_or_2_and_never_raises(context_factory, content):
    with (
        tempfile.TemporaryDirectory() as folder,
        mock.patch.object(kdbench.cli.app, "_context", context_factory),
    ):
        bench = Path(folder) / "bench.toml"
        bench.write_bytes(content)
        result = CliRunner().invoke(cli, ["validate", str(bench)])
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{result.exception!r} for:\n{content!r}"
        )
        assert result.exit_code in (0, 2), result.output
        lines = result.output.strip().splitlines()
        if result.exit_code == 0:
            assert lines == [f"{bench}: ok ({lines[0].split('(')[1]}"]
        else:
            assert lines and all(line.startswith("kdbench: error: ") for line in lines), (
                result.output
            )
