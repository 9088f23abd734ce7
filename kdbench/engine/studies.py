"""Optuna studies of a tuned benchmark: their storage, samplers and pruners.

One study per method (loss label) of each pair and dataset. Every study lives in one
journal file under ``<results>/tuning/`` (Optuna's file journal locks it, so worker
processes report to it and a killed search resumes from it); the sampler and pruner
are rebuilt from ``[tune]`` by whoever opens a study, the driver or a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from kdbench.core.search_space import Dimension

JOURNAL = Path("tuning") / "optuna.journal"

optuna.logging.set_verbosity(optuna.logging.WARNING)  # kdbench reports progress itself


def storage(path: str | Path) -> JournalStorage:
    """The journal storage of a results folder's studies (``path``: the journal file)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def sampler(name: str, seed: int, grid: dict[str, list[Any]] | None = None) -> Any:
    """Optuna's sampler for ``[tune] sampler``, seeded by ``[tune] seed``."""
    if name == "grid":
        return optuna.samplers.GridSampler(grid or {}, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def pruner(name: str) -> optuna.pruners.BasePruner:
    """Optuna's pruner for ``[tune] pruner``: none, median or successive halving.

    The median pruner waits for two finished trials and never judges the first epoch
    (steps are 1-based epochs: Optuna judges a step from ``n_warmup_steps`` on);
    successive halving starts its rungs at one epoch and keeps a third at each.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, name: str, dim: Dimension) -> Any:
    """A trial's value for one searched key (an enqueued trial gets its fixed value)."""
    if dim.points is not None:
        return trial.suggest_categorical(name, list(dim.points))
    low, high = dim.values
    log = dim.kind == "log_uniform"
    if dim.integer:
        return trial.suggest_int(name, low, high, log=log)
    return trial.suggest_float(name, float(low), float(high), log=log)


def trial_handle(pruning: dict[str, Any]) -> optuna.Trial:
    """A running trial, opened from its study's storage (in any process)."""
    study = optuna.load_study(
        study_name=pruning["study"],
        storage=storage(pruning["storage"]),
        pruner=pruner(pruning["pruner"]),
    )
    return optuna.trial.Trial(study, pruning["trial_id"])
