"""The identity of an experiment: what changes its result, and nothing else.

Two records of the same experiment are one sample wherever they were found, whatever
benchmark file or folder produced them. A cell's id also hashes the benchmark's name
and execution switches, so reports key records by :func:`experiment_id` instead, and
put records in one row only when their :func:`configuration_id` (the experiment
without its seed) is the same.
"""

from __future__ import annotations

from typing import Any

from kdbench.matrix import stable_hash

# Recipe keys that change how fast a cell runs, not what it learns or scores.
EXECUTION_SWITCHES = frozenset({"compile", "channels_last", "eval_batch_size", "logit_cache"})
# Dataset parameters that say where the data lives, not what it is: machines differ.
LOCATION = frozenset({"root", "download"})


def experiment(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a record's config that change its result.

    Dropped: the benchmark's name, how latency is measured (``measure``), execution
    switches, where datasets live and the teacher's derived id (its parts stay).
    """
    out = {k: v for k, v in config.items() if k not in ("benchmark", "measure")}
    out["recipe"] = _without(config.get("recipe"), EXECUTION_SWITCHES)
    out["dataset"] = _dataset(config.get("dataset"))
    teacher = config.get("teacher")
    if isinstance(teacher, dict):
        teacher = {k: v for k, v in teacher.items() if k != "id"}
        teacher["recipe"] = _without(teacher.get("recipe"), EXECUTION_SWITCHES)
        teacher["dataset"] = _dataset(teacher.get("dataset"))
        out["teacher"] = teacher
    return out


def experiment_id(config: dict[str, Any]) -> str:
    """A hash of :func:`experiment`: equal for the same experiment run anywhere."""
    return stable_hash(experiment(config))


def configuration_id(config: dict[str, Any], length: int = 6) -> str:
    """The experiment without its seed: the records one row may pool over seeds."""
    return stable_hash({k: v for k, v in experiment(config).items() if k != "seed"}, length)


def _dataset(spec: Any) -> Any:
    if not isinstance(spec, dict):
        return spec
    return {**spec, "params": _without(spec.get("params"), LOCATION)}


def _without(section: Any, keys: frozenset[str]) -> Any:
    if not isinstance(section, dict):
        return section
    return {k: v for k, v in section.items() if k not in keys}
