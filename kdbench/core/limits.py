"""Sizes beyond which a benchmark file is most likely a mistake, and how to go beyond them.

A typo (``epochs = 1e11``, a pasted list of a million seeds) should not start a run
that never ends. Past a limit, validation reports the number and how to confirm it:
``--yes`` on the command line, or ``[benchmark] max_cells`` for the matrix size. The
file size limit is checked before the file is parsed and cannot be lifted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdbench.core.errors import ConfigError

if TYPE_CHECKING:
    from kdbench.core.config import BenchmarkConfig

MAX_FILE_BYTES = 1 << 20  # 1 MiB; the largest shipped benchmark is a few kB
MAX_CELLS = 1_000
MAX_SEEDS = 100
MAX_EPOCHS = 10_000

_CONFIRM = "pass --yes to run it anyway"


def seed_and_epoch_errors(
    config: BenchmarkConfig, file: str, *, confirmed: bool
) -> list[ConfigError]:
    """Too many seeds, or a recipe with more epochs than anyone trains."""
    if confirmed:
        return []
    errors = []
    seeds = len(config.benchmark.seeds)
    if seeds > MAX_SEEDS:
        errors.append(
            ConfigError(
                f"{seeds} seeds is more than {MAX_SEEDS}; {_CONFIRM}",
                file=file,
                key="benchmark.seeds",
            )
        )
    recipes = [("recipe", config.recipe), ("teacher_recipe", config.teacher_recipe)]
    for i, pair in enumerate(config.pairs):
        if "epochs" in pair.recipe:
            recipes.append((f"pairs[{i}].recipe", config.student_recipe(pair)))
    for key, recipe in recipes:
        if recipe is not None and recipe.epochs > MAX_EPOCHS:
            errors.append(
                ConfigError(
                    f"{recipe.epochs} epochs is more than {MAX_EPOCHS:,}; {_CONFIRM}",
                    file=file,
                    key=f"{key}.epochs",
                )
            )
    return errors


def matrix_upper_bound(config: BenchmarkConfig) -> int:
    """Cells before deduplication: datasets x pairs x losses x seeds."""
    return (
        len(config.datasets)
        * len(config.pairs)
        * len(config.loss_labels())
        * len(config.benchmark.seeds)
    )


def cells_error(
    cells: int, config: BenchmarkConfig, file: str, *, confirmed: bool, exact: bool = True
) -> ConfigError | None:
    """A matrix larger than ``[benchmark] max_cells`` (default :data:`MAX_CELLS`)."""
    limit = config.benchmark.max_cells or MAX_CELLS
    if confirmed or cells <= limit:
        return None
    size = f"{cells:,} cells" if exact else f"up to {cells:,} cells"
    return ConfigError(
        f"the matrix has {size} ({len(config.datasets)} datasets x {len(config.pairs)} pairs "
        f"x {len(config.loss_labels())} losses x {len(config.benchmark.seeds)} seeds), more "
        f"than the limit of {limit:,}; raise [benchmark] max_cells or {_CONFIRM}",
        file=file,
        key="benchmark",
    )
