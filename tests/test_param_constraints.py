"""Every built-in loss, model and dataset declares its parameters' types and ranges.

The annotations are read the way a validator reads them: ``typing.get_type_hints`` on the
constructor or factory, then pydantic's ``TypeAdapter`` on each annotation.
"""

from __future__ import annotations

import inspect
import types
import typing

import annotated_types
import pytest
from pydantic import TypeAdapter, ValidationError

import kdbench
from kdbench.core.plugins import load_plugins

PLUGINS = load_plugins(strict=False)
BUILTIN = {info.name for info in PLUGINS.infos if info.source == "built-in"}
# Models register as teacher and student with one factory: check each factory once.
ENTRIES = list(
    {
        (entry.kind.replace("teachers", "students"), entry.name): entry
        for kind in ("teachers", "students", "losses", "datasets")
        for entry in PLUGINS.registry.entries(kind)
        if entry.plugin in BUILTIN
    }.values()
)


def _target(obj):
    return obj.__init__ if inspect.isclass(obj) else obj


def _hints(entry) -> dict[str, typing.Any]:
    return typing.get_type_hints(_target(entry.obj), include_extras=True)


def _constraints(annotation) -> list:
    """annotated_types bounds on the annotation (or on the non-None arm of an Optional)."""
    arms = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    found = []
    for arm in arms:
        if typing.get_origin(arm) is typing.Annotated:
            found += [
                m
                for m in arm.__metadata__
                if isinstance(m, annotated_types.BaseMetadata | annotated_types.GroupedMetadata)
            ]
    return found


def _is_number(annotation) -> bool:
    """Whether the annotation's underlying type is int or float (bool excluded)."""
    base = annotation
    if typing.get_origin(base) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(base) if a is not type(None))
    if typing.get_origin(base) is typing.Annotated:
        base = typing.get_args(base)[0]
    return base in (int, float)


def _id(entry) -> str:
    return f"{entry.kind}:{entry.name}"


def test_the_walk_covers_every_kind_of_builtin():
    kinds = {entry.kind for entry in ENTRIES}
    names = {entry.name for entry in ENTRIES}
    assert kinds == {"students", "losses", "datasets"}
    assert {"kd", "crd", "kd_ls", "cnn", "tv/resnet18", "resnet8x4", "digits"} <= names


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_every_builtin_parameter_has_a_resolvable_annotation(entry):
    hints = _hints(entry)  # raises when an annotation names something not importable
    params = inspect.signature(_target(entry.obj)).parameters
    for name, param in params.items():
        if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        assert name in hints, f"{_id(entry)}: parameter '{name}' has no annotation"
        TypeAdapter(hints[name])  # pydantic understands it


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_numeric_builtin_parameters_declare_a_range_their_default_satisfies(entry):
    hints = _hints(entry)
    for name, default in entry.params.items():
        if _is_number(hints[name]):
            assert _constraints(hints[name]), f"{_id(entry)}: '{name}' declares no range"
        if default is not inspect.Parameter.empty:
            TypeAdapter(hints[name]).validate_python(default)


BAD_VALUES = [
    ("losses", "kd", "temperature", -4),
    ("losses", "kd", "alpha", 7.5),
    ("losses", "soft_ce", "alpha", -0.1),
    ("losses", "dkd", "beta", -8.0),
    ("losses", "dkd", "temperature", 0.0),
    ("losses", "dkd_ls", "warmup", -1),
    ("losses", "kd_ls", "ce_weight", -0.1),
    ("losses", "crd", "momentum", 1.0),
    ("losses", "crd", "feature_dim", 0),
    ("losses", "crd", "nce_t", 0.0),
    ("losses", "crd", "negative_sampling", "same_class"),
    ("losses", "at", "p", 0.0),
    ("losses", "reviewkd", "mid_channels", 0),
    ("students", "cnn", "width", 0),
    ("students", "mlp", "layers", 0),
    ("datasets", "digits", "test_fraction", 1.0),
    ("datasets", "digits", "split_seed", -1),
    ("datasets", "cifar100", "train_subset", 0),
    ("datasets", "fashion_mnist", "test_subset", -5),
]


@pytest.mark.parametrize(("kind", "name", "param", "value"), BAD_VALUES)
def test_annotations_reject_out_of_range_values(kind, name, param, value):
    annotation = _hints(PLUGINS.registry.get(kind, name))[param]
    with pytest.raises(ValidationError):
        TypeAdapter(annotation).validate_python(value)


@pytest.mark.parametrize(
    ("alias", "good", "bad"),
    [
        (kdbench.Temperature, [1e-3, 4.0], [0.0, -4.0]),
        (kdbench.Weight, [0.0, 3000.0], [-1e-9]),
        (kdbench.Probability, [0.0, 0.9, 1.0], [-0.1, 1.0001, 7.5]),
        (kdbench.Fraction, [0.25, 0.999], [0.0, 1.0]),
        (kdbench.Momentum, [0.0, 0.5], [1.0, -0.5]),
        (kdbench.PositiveFloat, [2.0], [0.0]),
        (kdbench.PositiveInt, [1, 16384], [0, -3, 2.5]),
        (kdbench.NonNegativeInt, [0, 20], [-1]),
    ],
)
def test_shared_parameter_types_hold_their_documented_ranges(alias, good, bad):
    adapter = TypeAdapter(alias)
    for value in good:
        assert adapter.validate_python(value) == value
    for value in bad:
        with pytest.raises(ValidationError):
            adapter.validate_python(value)
