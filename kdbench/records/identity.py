"""The identity of an experiment: what changes its result, and nothing else.

A cell's id is :func:`experiment_id` of its config and a teacher's id is
:func:`teacher_id`: both hash the data, the models, the loss and its parameters, the
recipe's numbers, the seed and the precision, and never how fast a run goes (execution
switches), where the data lives or what the benchmark is called. So two records of the
same experiment have the same id wherever they were found, turning on ``compile`` or
the logit cache or renaming a benchmark reruns nothing, and reports put records in one
row only when their :func:`configuration_id` (the experiment without its seed) is the
same. This module is the one definition; the planner and the readers of records both
import it, and it imports nothing of either.

Loss parameters are hashed as the benchmark file gives them, not with the loss's
defaults filled in: a default lives in the loss's code, which the record's provenance
(kdbench version, git sha, plugin versions) names.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Recipe keys that change how fast a cell runs or how often it is watched, not what it
# learns or scores (``eval_every`` changes only which epochs get a test accuracy).
EXECUTION_SWITCHES = frozenset(
    {"compile", "channels_last", "eval_batch_size", "eval_every", "logit_cache"}
)
# Recipe keys of multi-device cells: left out of the id of a one-device cell.
SINGLE_DEVICE = frozenset({"devices", "sync_bn"})
# Dataset parameters that say where the data lives, not what it is: machines differ.
# ``workers`` (a streaming dataset's reader processes) changes only how fast it is read;
# ``max_pixels`` only which oversized files are refused before training, never the data.
LOCATION = frozenset({"root", "download", "workers", "max_pixels"})
# A tuned cell's bookkeeping: which study and trial asked for it, what it scored, the
# published setting it was tuned from. The
# experiment is its phase, its parameters (already in its loss and recipe), the
# validation split and, for a final cell, the budget that selected it.
TUNE_BOOKKEEPING = frozenset({"study", "trial", "selected_val_top1", "published_cell", "published"})
# A trial is the same experiment whatever budget or sampler its study had.
TRIAL_BOOKKEEPING = TUNE_BOOKKEEPING | {"sampler", "trials"}


def stable_hash(data: Any, length: int = 12) -> str:
    """sha256 of canonical JSON: the same configuration always gives the same id."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def experiment(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a cell's config that change its result.

    Dropped: the benchmark's name, how latency is measured (``measure``), execution
    switches, where datasets live, the teacher's derived id (its parts stay) and a tuned
    cell's bookkeeping (:data:`TUNE_BOOKKEEPING`; ordinary cells have no ``tune``).
    """
    out = {k: v for k, v in config.items() if k not in ("benchmark", "measure")}
    if isinstance(config.get("tune"), dict):
        dropped = TRIAL_BOOKKEEPING if config.get("phase") == "trial" else TUNE_BOOKKEEPING
        out["tune"] = _without(config["tune"], dropped)
    out["recipe"] = recipe_experiment(config.get("recipe"))
    out["dataset"] = _dataset(config.get("dataset"))
    if isinstance(config.get("teacher"), dict):
        out["teacher"] = teacher_experiment(config["teacher"])
    return out


def teacher_experiment(teacher: dict[str, Any]) -> dict[str, Any]:
    """The parts of a teacher's config that change its weights.

    Its checkpoint's path is dropped (the file's sha256 stays), and so are the teacher
    recipe's execution switches (a teacher is never distilled, so ``logit_cache`` is
    ignored there too), its device keys (teachers train in one process) and where its
    dataset lives.
    """
    out = {k: v for k, v in teacher.items() if k not in ("id", "checkpoint")}
    # the harness trains teachers in one process, whatever the students' devices
    out["recipe"] = _without(recipe_experiment(teacher.get("recipe")), SINGLE_DEVICE)
    out["dataset"] = _dataset(teacher.get("dataset"))
    return out


def experiment_id(config: dict[str, Any]) -> str:
    """A cell's id: a hash of :func:`experiment`, equal for the same experiment anywhere."""
    return stable_hash(experiment(config))


def teacher_id(teacher: dict[str, Any]) -> str:
    """A teacher's id (and its cache key): a hash of :func:`teacher_experiment`."""
    return stable_hash(teacher_experiment(teacher))


def configuration_id(config: dict[str, Any], length: int = 6) -> str:
    """The experiment without its seed: the records one row may pool over seeds."""
    return stable_hash({k: v for k, v in experiment(config).items() if k != "seed"}, length)


def _dataset(spec: Any) -> Any:
    if not isinstance(spec, dict):
        return spec
    return {**spec, "params": _without(spec.get("params"), LOCATION)}


def recipe_experiment(recipe: Any) -> Any:
    """A recipe without execution switches, and without its device keys on one device.

    ``devices`` and ``sync_bn`` change the result (per-device BatchNorm statistics and
    random draws), so they are hashed, but only from two devices on: one device is the
    experiment every earlier record measured, under the id it always had.
    """
    out = _without(recipe, EXECUTION_SWITCHES)
    if isinstance(out, dict) and out.get("devices", 1) == 1:
        out = _without(out, SINGLE_DEVICE)
    return out


def _without(section: Any, keys: frozenset[str]) -> Any:
    if not isinstance(section, dict):
        return section
    return {k: v for k, v in section.items() if k not in keys}
