"""Pruning a trial as it trains: each epoch's validation top-1 goes to its study, which
may stop it. A pruned student leaves its lockstep group; the others go on."""

from __future__ import annotations

from typing import Any

from kdbench.core.errors import KdbenchError
from kdbench.engine.training import StudentRun


class TrialPruned(KdbenchError):
    """The study's pruner stopped this trial; its record says ``pruned``."""


def is_pruned(error: BaseException | None) -> bool:
    """True for a pruned run (also one restored from a checkpoint, by its type's name)."""
    return error is not None and type(error).__name__ == TrialPruned.__name__


class Judge:
    """Reports every trial run's validation top-1 after each epoch and prunes as told."""

    def __init__(self, runs: list[tuple[dict[str, Any] | None, StudentRun]]) -> None:
        self.trials: list[tuple[Any, StudentRun]] = []
        # a trial the study pruned before, run again (its record was deleted): same stop
        self.replays = [(info["stop_after"], run) for info, run in runs
                        if info and "stop_after" in info]  # fmt: skip
        studied = [(info, run) for info, run in runs if info and "stop_after" not in info]
        if studied:  # Optuna is imported by tuned runs alone
            from kdbench.engine.studies import trial_handle

            self.trials = [(trial_handle(info), run) for info, run in studied]

    def __bool__(self) -> bool:
        return bool(self.trials or self.replays)

    def __call__(self, epoch: int) -> None:
        for trial, run in self.trials:
            value = _scored(run, epoch)
            if value is None:
                continue
            trial.report(value, epoch + 1)
            if trial.should_prune():
                _prune(run, epoch, value)
        for stop_after, run in self.replays:
            value = _scored(run, epoch)
            if value is not None and epoch + 1 >= stop_after:
                _prune(run, epoch, value)


def _prune(run: StudentRun, epoch: int, value: float) -> None:
    """Stop a run: it leaves its group, and its record will say ``pruned``."""
    run.error = TrialPruned(f"pruned after epoch {epoch + 1}: validation top-1 {value:.2f}")


def _scored(run: StudentRun, epoch: int) -> float | None:
    """A live run's validation top-1 of this epoch (None: failed, or not evaluated)."""
    if run.error is not None or not run.history or run.history[-1]["epoch"] != epoch + 1:
        return None
    return run.history[-1]["test_top1"]
