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
        self.trials = []
        if any(info for info, _ in runs):  # Optuna is imported by tuned runs alone
            from kdbench.engine.studies import trial_handle

            self.trials = [(trial_handle(info), run) for info, run in runs if info]

    def __bool__(self) -> bool:
        return bool(self.trials)

    def __call__(self, epoch: int) -> None:
        for trial, run in self.trials:
            if run.error is not None or not run.history:
                continue
            entry = run.history[-1]
            if entry["epoch"] != epoch + 1 or entry["test_top1"] is None:
                continue
            trial.report(entry["test_top1"], epoch + 1)
            if trial.should_prune():
                run.error = TrialPruned(
                    f"pruned after epoch {epoch + 1}: validation top-1 {entry['test_top1']:.2f}"
                )
