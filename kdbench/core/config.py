"""Benchmark files: TOML parsed into typed, validated models.

Validation happens in two passes. Pydantic checks the shape (unknown keys rejected,
types checked); then every name is looked up in the plugin registry and every
parameter checked against what the plugin accepts and its type annotation. Each error
is one :class:`ConfigError` naming the file, the key path and what was expected; all
of a pass's errors are reported together (:class:`ConfigErrors`).
"""

from __future__ import annotations

import codecs
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kdbench.core.errors import ConfigError, KdbenchError, did_you_mean
from kdbench.core.limits import MAX_FILE_BYTES
from kdbench.core.param_types import shorten, shown
from kdbench.core.registry import Registry
from kdbench.core.search_space import (
    Dimension,
    is_recipe_key,
    nested,
    parse_space,
    quoted,
    recipe_path,
    recipe_value,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
BASELINE_LOSS = "ce"


class _Strict(BaseModel):
    # Strict as plugin parameters are: "10" is not a number; 3 is a float, 1.0 not an int.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Optimizer(_Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0)] = 0.05
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    nesterov: bool = False


class Schedule(_Strict):
    name: Literal["multistep", "cosine", "constant"] = "multistep"
    milestones: list[Annotated[int, Field(gt=0)]] = []
    gamma: Annotated[float, Field(gt=0)] = 0.1


class Augment(_Strict):
    crop_padding: Annotated[int, Field(ge=0)] = 0
    flip: bool = False


class Recipe(_Strict):
    """How a network is trained: the RepDistiller/mdistiller CIFAR recipe by default."""

    epochs: Annotated[int, Field(gt=0)] = 240
    batch_size: Annotated[int, Field(gt=0)] = 64
    # "auto": 64 on a CPU (faster there), 512 on a GPU; the record says which ran
    eval_batch_size: Annotated[int, Field(gt=0)] | Literal["auto"] = "auto"
    # test accuracy every this many epochs (and always after the last one)
    eval_every: Annotated[int, Field(ge=1)] = 1
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = Schedule(milestones=[150, 180, 210])
    augment: Augment = Augment()
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    logit_cache: Literal["auto", "on", "off"] = "auto"
    channels_last: bool = False
    compile: Literal[False, True, "default", "reduce-overhead", "max-autotune"] = False
    # processes (devices) training each cell; batch_size stays the global batch
    devices: Annotated[int, Field(ge=1)] = 1
    sync_bn: bool = True  # SyncBatchNorm across devices (CUDA): the global batch's statistics


class Pair(_Strict):
    """One teacher -> student pair, with optional model parameters and recipe overrides."""

    teacher: str
    student: str
    teacher_params: dict[str, Any] = {}
    student_params: dict[str, Any] = {}
    teacher_checkpoint: str | None = None
    recipe: dict[str, Any] = {}
    loss_params: dict[str, dict[str, Any]] = {}
    # search.<label>: this pair's search space for a loss, over the loss's own (see [tune])
    search: dict[str, dict[str, Any]] = {}


class Measure(_Strict):
    """The measurement protocol's knobs (recorded with every number)."""

    latency: bool = True
    warmup: Annotated[int, Field(ge=0)] = 10
    latency_iters: Annotated[int, Field(gt=0)] = 100
    throughput_batch: Annotated[int, Field(gt=0)] = 256
    throughput_iters: Annotated[int, Field(gt=0)] = 5
    flops: bool = True


class BenchmarkInfo(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
    description: str = ""
    seeds: Annotated[list[int], Field(min_length=1)] = [0]
    teacher_seed: int = 0
    max_cells: Annotated[int, Field(gt=0)] | None = None  # see kdbench.core.limits

    @field_validator("seeds")
    @classmethod
    def _unique(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be unique")
        return seeds


class Executor(_Strict):
    """Where cells run; ``lockstep`` trains cells sharing teacher, data and seed together."""

    name: str = "local"
    params: dict[str, Any] = {}
    retries: Annotated[int, Field(ge=0)] = 0
    lockstep: bool = True


class Run(_Strict):
    """What a run keeps beside its records; none of it changes a cell's result or id."""

    checkpoint_every: Annotated[int, Field(ge=0)] = 1  # epochs; 0: no checkpoints
    keep_checkpoints: bool = False
    keep_students: bool = True


class Tune(_Strict):
    """The tuning protocol: every method searched on a validation split, equal budgets."""

    validation: Annotated[float, Field(gt=0, lt=1)] = 0.1  # of the training split, per class
    trials: Annotated[int, Field(gt=0)] = 16  # per method (loss label) and pair
    trial_epochs: Annotated[int, Field(gt=0)] | None = None  # None: the recipe's epochs
    sampler: Literal["grid", "random", "tpe"] = "tpe"
    pruner: Literal["none", "median", "halving"] = "none"
    seed: int = 0  # the sampler's, the validation split's and the trials' training seed
    batch: Annotated[int, Field(gt=0)] = 4  # trials asked of each study per round
    # also run every method's published setting with the benchmark's seeds (the cells an
    # untuned run of the file has), so the leaderboard shows tuned beside published
    published: bool = False
    # keys every method searches (recipe keys only); a loss's own search adds to it
    search: dict[str, Any] = {}


class BenchmarkConfig(_Strict):
    """A whole benchmark file."""

    benchmark: BenchmarkInfo
    datasets: Annotated[dict[str, dict[str, Any]], Field(min_length=1)]
    recipe: Recipe = Recipe()
    teacher_recipe: Recipe | None = None
    pairs: Annotated[list[Pair], Field(min_length=1)]
    losses: dict[str, dict[str, Any]] = {}
    measure: Measure = Measure()
    executor: Executor = Executor()
    run: Run = Run()
    # [trackers.<name>]: who watches the run (tensorboard, mlflow, ...); jsonl always does
    trackers: dict[str, dict[str, Any]] = {}
    tune: Tune | None = None

    def loss_name(self, label: str) -> str:
        """The registered loss behind a ``[losses.<label>]`` table (``loss = "..."`` renames)."""
        return self.losses.get(label, {}).get("loss", label)

    def loss_params(self, label: str, pair: Pair | None = None) -> dict[str, Any]:
        """A loss's parameters; a pair's ``loss_params.<label>`` overrides them for that pair."""
        table = self.losses.get(label, {})
        params = {k: v for k, v in table.items() if k not in ("loss", "search")}
        return params | (pair.loss_params.get(label, {}) if pair else {})

    def search_table(self, label: str, pair: Pair | None = None) -> dict[str, Any]:
        """A method's search space as written: ``[tune.search]``, the loss's ``search``
        table over it, and the pair's ``search.<label>`` over both, key by key."""
        tune = self.tune.search if self.tune else {}
        own = self.losses.get(label, {}).get("search", {})
        mine = pair.search.get(label, {}) if pair else {}
        tables = [t for t in (tune, own, mine) if isinstance(t, dict)]
        return {k: v for table in tables for k, v in table.items()}

    def loss_labels(self) -> list[str]:
        """Loss labels in file order, with the baseline first (added when absent)."""
        labels = list(self.losses)
        return labels if BASELINE_LOSS in labels else [BASELINE_LOSS, *labels]

    def student_recipe(self, pair: Pair) -> Recipe:
        return _merge_recipe(self.recipe, pair.recipe)


def _merge_recipe(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    merged = recipe.model_dump()
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return Recipe.model_validate(merged)


class ConfigErrors(ConfigError):
    """Several mistakes in one file, reported together: one ``file: key: what`` line each."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


def raise_if_any(errors: list[ConfigError]) -> None:
    """Raise one error as itself, several as :class:`ConfigErrors`, none not at all."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


def load_config(path: str | Path, registry: Registry) -> BenchmarkConfig:
    """Read, validate and name-check a benchmark file."""
    file = shorten(str(path))
    config = parse_config(read_benchmark(path), file)
    raise_if_any(name_errors(config, registry, file))
    return config


def read_benchmark(path: str | Path) -> dict[str, Any]:
    """The TOML table of a benchmark file; anything unreadable is one :class:`ConfigError`.

    The size is checked before reading, so a huge file is refused without being parsed.
    """
    path = Path(path)
    file = shorten(str(path))
    try:
        if path.is_dir():
            raise ConfigError("is a folder, not a benchmark file", file=file)
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{size:,} bytes is larger than the {MAX_FILE_BYTES:,} a benchmark file may have",
                file=file,
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such benchmark file", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror or exc}", file=file) from None
    if data.startswith(codecs.BOM_UTF8):  # TOML forbids it; tomllib would only say line 1
        raise ConfigError(
            "starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without BOM", file=file
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line}", file=file
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None


def parse_config(raw: dict[str, Any], file: str) -> BenchmarkConfig:
    """The typed model of a TOML table; every shape error at once."""
    try:
        return BenchmarkConfig.model_validate(raw)
    except ValidationError as exc:
        raise_if_any(_config_errors(exc, file))
        raise  # unreachable: a ValidationError has at least one error


def name_errors(config: BenchmarkConfig, registry: Registry, file: str) -> list[ConfigError]:
    """Every dataset, model, loss and executor exists and gets only parameters it accepts."""
    errors: list[ConfigError] = []

    def check(kind: str, name: Any, params: dict[str, Any], key: str, params_key: str) -> bool:
        try:
            entry = registry.get(kind, name, file=file, key=key)
        except ConfigError as exc:
            errors.append(exc)
            return False
        found = entry.param_errors(params, file=file, key=params_key)
        errors.extend(found)
        return not found

    for name, params in config.datasets.items():
        check("datasets", name, params, f"datasets.{name}", f"datasets.{name}")
    for label, table in config.losses.items():
        if not isinstance(table.get("loss", label), str):
            errors.append(
                ConfigError(
                    f"must be the name of a registered loss, got {shown(table['loss'])}",
                    file=file,
                    key=f"losses.{label}.loss",
                )
            )
    labels = [label for label in config.loss_labels() if isinstance(config.loss_name(label), str)]
    for i, pair in enumerate(config.pairs):
        for role, kind in (("teacher", "teachers"), ("student", "students")):
            params = getattr(pair, f"{role}_params")
            check(
                kind, getattr(pair, role), params, f"pairs[{i}].{role}", f"pairs[{i}].{role}_params"
            )
        try:
            config.student_recipe(pair)
        except ValidationError as exc:
            errors += _config_errors(exc, file, prefix=f"pairs[{i}].recipe", model=Recipe)
        for label in pair.loss_params:
            if label not in config.loss_labels():
                errors.append(
                    ConfigError(
                        f"no loss '{label}' in [losses]{did_you_mean(label, config.loss_labels())}",
                        file=file,
                        key=f"pairs[{i}].loss_params.{label}",
                    )
                )
        for label in labels:
            if i > 0 and label not in pair.loss_params:
                continue  # the file's own [losses.<label>] table is checked once
            key = (
                f"pairs[{i}].loss_params.{label}"
                if label in pair.loss_params
                else f"losses.{label}"
            )
            name, params = config.loss_name(label), config.loss_params(label, pair)
            if check("losses", name, params, key, key):
                errors.extend(_construction_errors(registry, name, params, file, key))
    check(
        "executors",
        config.executor.name,
        config.executor.params,
        "executor.name",
        "executor.params",
    )
    return errors + search_errors(config, registry, file)


def search_errors(config: BenchmarkConfig, registry: Registry, file: str) -> list[ConfigError]:
    """Every search table parses, names a key its method has, holds values that key takes
    and contains the published value (the published setting is always a trial)."""
    places: list[tuple[str, Any, str | None, Pair | None]] = []
    if config.tune and config.tune.search:
        places.append(("tune.search", config.tune.search, None, None))
    for label, table in config.losses.items():
        if "search" in table:
            places.append((f"losses.{label}.search", table["search"], label, None))
    errors: list[ConfigError] = []
    labels = config.loss_labels()
    for i, pair in enumerate(config.pairs):
        for label, table in pair.search.items():
            key = f"pairs[{i}].search.{label}"
            if label in labels:
                places.append((key, table, label, pair))
            else:
                errors.append(ConfigError(
                    f"no loss '{label}' in [losses]{did_you_mean(label, labels)}",
                    file=file, key=key,
                ))  # fmt: skip
    if places and config.tune is None:
        return [
            ConfigError(
                "a search space takes effect only in a tuned benchmark: add a [tune] table "
                "(see docs/tuning.md)",
                file=file,
                key=places[0][0],
            )
        ]
    for key, table, label, pair in places:
        space, found = parse_space(table, file=file, key=key)
        errors += found
        for name, dim in space.items():
            error = _dimension_error(config, registry, name, dim, label, pair)
            if error:
                errors.append(ConfigError(error, file=file, key=f"{key}.{quoted(name)}"))
    return errors


def _dimension_error(
    config: BenchmarkConfig,
    registry: Registry,
    name: str,
    dim: Dimension,
    label: str | None,
    pair: Pair | None,
) -> str | None:
    """What is wrong with one searched key of a method (None: nothing)."""
    assert config.tune is not None  # checked by the caller
    if config.tune.sampler == "grid" and dim.points is None:
        return f"sampler 'grid' searches grid and choice dimensions only, got {dim}"
    if is_recipe_key(name):
        recipe = config.student_recipe(pair) if pair else config.recipe
        unknown = _unknown_recipe_key(name)
        if unknown:
            return unknown
        for value in dim.values:
            try:
                _merge_recipe(recipe, nested(name, value))
            except ValidationError as exc:
                return f"{shown(value)} is not a value of {name}: {exc.errors()[0]['msg']}"
        published = recipe_value(recipe.model_dump(), name)
    elif label is None:
        return (
            f"unknown key '{name}': [tune.search] searches recipe keys (\"recipe.optimizer.lr\"); "
            "a loss's parameters go in [losses.<label>.search]"
        )
    else:
        entry = registry.get("losses", config.loss_name(label))
        params = config.loss_params(label, pair)
        for value in dim.values:
            found = entry.param_errors(params | {name: value}, file=None, key="")
            if found:
                return found[0].detail
        published = params.get(name, entry.params.get(name))
    if not dim.contains(published):
        return (
            f"the published value {shown(published)} is not in {dim}: the published "
            "setting is always one of the trials"
        )
    return None


def _unknown_recipe_key(name: str) -> str | None:
    """Why a dotted recipe key names no number of the recipe (None: it does)."""
    model: Any = Recipe
    parts = recipe_path(name)
    for depth, part in enumerate(parts):
        fields = list(model.model_fields) if isinstance(model, type) else []
        if part not in fields:
            return f"unknown recipe key '{part}'{did_you_mean(part, fields)}" + (
                f"; expected one of: {', '.join(fields)}" if fields else ""
            )
        model = _unwrap(model.model_fields[part].annotation)
        if depth + 1 < len(parts) and not (
            isinstance(model, type) and issubclass(model, BaseModel)
        ):
            return f"recipe key '{part}' has no keys under it"
    if isinstance(model, type) and issubclass(model, BaseModel):
        return f"recipe key '{parts[-1]}' is a table; name one of its keys"
    return None


def _construction_errors(
    registry: Registry, name: str, params: dict[str, Any], file: str, key: str
) -> list[ConfigError]:
    """A loss's own checks in its constructor (combinations a type cannot express)."""
    entry = registry.get("losses", name)
    try:
        entry.obj(**params)
    except ConfigError as exc:
        return [ConfigError(exc.detail, file=file, key=key)]
    except (TypeError, ValueError, KdbenchError) as exc:
        return [
            ConfigError(f"invalid parameters for loss '{entry.name}': {exc}", file=file, key=key)
        ]
    return []


def _config_errors(
    exc: ValidationError, file: str, *, prefix: str = "", model: type[BaseModel] = BenchmarkConfig
) -> list[ConfigError]:
    """Every pydantic error as a ConfigError (the first one per key)."""
    errors: dict[str | None, ConfigError] = {}
    for error in exc.errors():
        found = _config_error(error, file, prefix=prefix, model=model)
        errors.setdefault(found.key, found)
    return list(errors.values())


def _config_error(error: Any, file: str, *, prefix: str, model: type[BaseModel]) -> ConfigError:
    """One pydantic error as a ConfigError with the key path and what was expected."""
    loc = [str(part) for part in error["loc"]]
    # List positions read as in the file's own terms: pairs[0].teacher, seeds[2].
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    key = (prefix + path).lstrip(".")
    if error["type"] == "extra_forbidden":
        allowed = _fields_at(model, list(error["loc"][:-1]))
        message = f"unknown key '{loc[-1]}'{did_you_mean(loc[-1], allowed)}"
        if allowed:
            message += f"; expected one of: {', '.join(allowed)}"
    elif error["type"] == "missing":
        message = "this key is required"
    else:
        message = f"{error['msg']} (got {shown(error.get('input'))})"
    return ConfigError(message, file=file, key=key)


def _fields_at(model: Any, loc: list[Any]) -> list[str]:
    """The field names accepted at a location inside a pydantic model."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return []
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip ``Optional`` / ``Annotated`` so the model class underneath is visible."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation
