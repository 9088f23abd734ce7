"""The record schema: what one cell's JSON file holds, as one typed model.

The writer builds every record through :class:`Record` and every reader parses through
it, so a field is named in one place. Sections whose keys grow with the measurement
(latency, size, provenance, ...) are typed where readers rely on a key and keep any
further keys. Records of an older :data:`SCHEMA_VERSION` are upgraded by
:func:`migrate`; ``docs/record.schema.json`` is :func:`json_schema` written out.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kdbench.records.identity import experiment_id, teacher_id

# 3: cell and teacher ids are experiment ids (kdbench.records.identity), no longer hashes of
# the whole config.
SCHEMA_VERSION = 3
# Versions :func:`migrate` can upgrade to :data:`SCHEMA_VERSION`.
MIGRATABLE = frozenset({1, 2, SCHEMA_VERSION})


class _Open(BaseModel):
    """A section that keeps keys this schema does not name (new measurements)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class ModelConfig(_Open):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class LossConfig(_Open):
    name: str
    label: str
    params: dict[str, Any] = Field(default_factory=dict)


class TeacherConfig(_Open):
    id: str | None = None
    model: ModelConfig
    dataset: ModelConfig | None = None
    recipe: dict[str, Any] | None = None
    seed: int | None = None


class CellConfig(_Open):
    """The resolved configuration of a cell (its id is the hash of its experiment)."""

    benchmark: str
    dataset: ModelConfig
    student: ModelConfig
    loss: LossConfig
    seed: int
    recipe: dict[str, Any] = Field(default_factory=dict)
    measure: dict[str, Any] = Field(default_factory=dict)
    teacher: TeacherConfig | None = None
    phase: Literal["trial", "final"] | None = Field(
        default=None,
        description="a tuned benchmark's cell: a trial (validation split) or a final run of "
        "the selected setting (absent: an ordinary cell)",
    )
    tune: dict[str, Any] | None = Field(
        default=None,
        description="trial: study, trial, params, validation, sampler, trials, trial_epochs; "
        "final: study, trials, trial_epochs, validation, sampler, selected, selected_val_top1 "
        "(docs/tuning.md)",
    )


class HistoryEntry(BaseModel):
    """One training epoch: its learning rate, test accuracy, mean loss terms and the mean
    of each diagnostic the loss reported (absent when it reported none)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epoch: int = Field(ge=1, description="1-based")
    lr: float | None = None
    test_top1: float | None = None
    val_top1: float | None = Field(
        default=None, description="a trial's validation top-1 (trials never see the test split)"
    )
    train: dict[str, float] = Field(default_factory=dict)
    diagnostics: dict[str, float | None] = Field(
        default_factory=dict,
        description="per-epoch means of DistillationLoss.log values, not part of the loss "
        "(None: not finite)",
    )


class Metrics(_Open):
    top1: float | None = Field(default=None, description="test top-1; absent only in trials")
    val_top1: float | None = Field(default=None, description="a trial's validation top-1")
    top5: float | None = None
    final_train_loss: dict[str, float] | None = None
    best_top1: float | None = None
    best_epoch: int | None = None


class CostRef(BaseModel):
    """Where one architecture's inference cost is kept, relative to the results folder."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1)
    file: str = Field(min_length=1, description="costs/<key>.json in the results folder")


class ArchCost(_Open):
    """The cost files of the networks a cell used, measured once per architecture and device
    (records without it carry their own ``latency``)."""

    student: CostRef | None = None
    teacher: CostRef | None = None


class Error(_Open):
    type: str
    message: str
    traceback: str | None = None


class GitState(_Open):
    """A repository's commit and whether its tracked files had changes (None: not in git)."""

    sha: str | None = None
    dirty: bool | None = None


class PluginSource(_Open):
    """Where a loaded plugin came from: its distribution (kdbench for a built-in one)."""

    distribution: str
    version: str


class Provenance(_Open):
    """What produced a record; further keys (versions, device, ...) are kept as written."""

    git: GitState | None = Field(
        default=None,
        description="kdbench's own source commit (sha null unless it runs from a git "
        "checkout); in records without benchmark_git, the benchmark file's repository",
    )
    benchmark_git: GitState | None = Field(
        default=None, description="the repository holding the benchmark file (sha null: none)"
    )
    plugins: dict[str, PluginSource | str] | None = Field(
        default=None,
        description="each loaded plugin's distribution and version (older records: the "
        "version alone)",
    )
    plugin_problems: list[str] | None = Field(
        default=None,
        description="plugins skipped and names disabled when the cell ran (absent: none)",
    )


class StudentFile(_Open):
    """The kept student's weights: a file under the results folder, and its hash."""

    file: str = Field(description="relative to the results folder")
    sha256: str
    bytes: int | None = None


class Record(_Open):
    """One cell's record: ``ok`` with metrics, ``failed`` with the error, or (a trial only)
    ``pruned`` with the validation accuracy it had when its study stopped it."""

    schema_version: Literal[3]
    cell_id: str = Field(min_length=1)
    status: Literal["ok", "failed", "pruned"]
    config: CellConfig
    benchmark_config_hash: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    executor: str | None = None
    attempts: int | None = None
    earlier_errors: list[dict[str, Any]] | None = None
    teacher: dict[str, Any] | None = None
    metrics: Metrics | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    error: Error | None = None
    size: dict[str, Any] | None = None
    latency: dict[str, Any] | None = None
    arch_cost: ArchCost | None = None
    cost: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = None
    protocol: dict[str, Any] | None = None
    provenance: Provenance | None = None
    student: StudentFile | None = None

    @field_validator("history", mode="before")
    @classmethod
    def _epochs(cls, value: Any) -> Any:
        return upgrade_history(value)

    @model_validator(mode="after")
    def _outcome(self) -> Record:
        if self.status == "ok" and self.metrics is None:
            raise ValueError("status 'ok' without metrics")
        trial = self.config.phase == "trial"
        if self.status == "pruned" and not trial:
            raise ValueError("status 'pruned' on a cell that is no trial")
        score = "val_top1" if trial else "top1"
        if self.status == "ok" and getattr(self.metrics, score) is None:
            raise ValueError(f"status 'ok' without metrics.{score}")
        if self.status == "failed" and self.error is None:
            raise ValueError("status 'failed' without error")
        return self


def upgrade_history(history: Any) -> Any:
    """Version-1 history (one plain dict of loss terms per epoch) as epoch entries.

    A dict that already names its ``epoch`` is left for validation to judge.
    """
    if not isinstance(history, list):
        return history
    return [
        {"epoch": i + 1, "lr": None, "test_top1": None, "train": entry}
        if isinstance(entry, dict) and "epoch" not in entry
        else entry
        for i, entry in enumerate(history)
    ]


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A record of any version in :data:`MIGRATABLE` as one of :data:`SCHEMA_VERSION`.

    Version 1 differs from 2 in the shape of ``history``, which validation upgrades.
    Versions 1 and 2 hashed the whole config into the cell and teacher ids (benchmark
    name and execution switches included): both are recomputed from the recorded
    config, so an old record is found under the id today's plan gives its experiment.
    Its file keeps its old name; readers match the name against the stored id.
    """
    if data.get("schema_version") == SCHEMA_VERSION:
        return data
    data = {**data, "schema_version": SCHEMA_VERSION}
    config = data.get("config")
    if not isinstance(config, dict):
        return data  # validation says what is wrong
    teacher = config.get("teacher")
    if isinstance(teacher, dict):
        new = teacher_id(teacher)
        info = data.get("teacher")
        if isinstance(info, dict) and "id" in info and info["id"] == teacher.get("id"):
            data["teacher"] = {**info, "id": new}
        config = {**config, "teacher": {**teacher, "id": new}}
        data["config"] = config
    data["cell_id"] = experiment_id(config)
    return data


def dump(record: Record) -> dict[str, Any]:
    """A record as JSON data, with exactly the keys it was built with."""
    return record.model_dump(mode="json", exclude_unset=True)


def json_schema() -> str:
    """The JSON Schema of a record, as committed in ``docs/record.schema.json``."""
    return json.dumps(Record.model_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m kdbench.records.schema > docs/record.schema.json
    print(json_schema(), end="")
