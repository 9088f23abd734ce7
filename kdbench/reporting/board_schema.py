"""The JSON form of a leaderboard (:func:`kdbench.reporting.render_json.to_json`), as a model.

Tools read ``leaderboard.json`` without kdbench; this model is its contract, written out
as ``docs/leaderboard.schema.json`` (``python -m kdbench.reporting.board_schema``). Every
object forbids keys the model does not name, so a key added to the JSON without adding it
here fails the test that validates committed results against the schema. A number that
is undefined (fewer than two seeds, no teacher, no measurement) is ``null``, never NaN.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT = "kdbench-leaderboard/1"

Number = float | None


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CostJSON(_Closed):
    """An architecture's inference cost on one device (``Board.costs``)."""

    device: str = Field(description="the device it was measured on")
    p50_ms: Number = Field(description="batch-1 median latency, ms")
    p50_iqr_ms: Number = Field(description="interquartile range of the batch-1 latency, ms")
    p50_ci_ms: tuple[Number, Number] = Field(description="95% interval of the median, ms")
    p99_ms: Number = Field(description="batch-1 99th percentile latency, ms")
    throughput: Number = Field(description="images per second at a large batch (median)")
    throughput_iqr: Number = Field(description="interquartile range of the throughput")
    params: Number = Field(description="parameters")
    flops: Number = Field(description="forward FLOPs per image (2 per multiply-add)")
    bytes: Number = Field(description="size of the weights in bytes")
    measurements: int = Field(description="1, or the number of per-cell measurements pooled")
    per_cell: bool = Field(description="true for the median of older records' own measurements")
    key: str = Field(description="the cost file's key; empty for per-cell measurements")
    missing: bool = Field(description="a record names this cost file, but it is absent")


class PublishedJSON(_Closed):
    top1: float = Field(description="the published top-1 %")
    source: str = Field(description="the citation")


class TrialJSON(_Closed):
    """One tuning trial of a tuned row's study (the data of its sensitivity figure)."""

    trial: int = Field(description="its number in the study; 0 is the published setting")
    params: dict[str, Any] = Field(description="the searched values it trained with")
    status: str = Field(description="ok, pruned (stopped early) or failed")
    val_top1: Number = Field(description="validation top-1 % at its last evaluated epoch")


class RowJSON(_Closed):
    """One method of one pair: measured over seeds (``kind`` measured) or a published figure."""

    dataset: str
    teacher: str
    student: str
    variant: str = Field(description="the pair's variant; empty for the plain pair")
    kind: Literal["measured", "published"]
    method: str = Field(description="the method, with its configuration where there are several")
    status: str = Field(description="ok, failed, partial ...")
    n: int | None = Field(description="seeds that finished (measured rows)")
    n_failed: int | None = Field(description="seeds that failed (measured rows)")
    seeds: list[int]
    missing_seeds: list[int] = Field(description="seeds other methods of the pair have")
    statistic: str = Field(description="which epoch the top-1 is: last, best or unstated")
    top1_mean: Number
    top1_std: Number
    ci95: Number = Field(description="half-width of the 95% t interval of the mean")
    top5_mean: Number
    best_top1_test_selected_mean: Number = Field(description="best evaluated epoch (optimistic)")
    best_top1_test_selected_std: Number
    best_top1_test_selected_n: int | None
    best_epoch_mean: Number
    delta_vs_baseline: Number
    paired_n: int | None = Field(description="seeds shared with the baseline")
    paired_delta: Number
    paired_ci95: Number
    paired_t_p: Number
    wilcoxon_p: Number
    better_than_baseline: bool | None = Field(description="by the paired t-test at p < 0.05")
    gap_recovered: Number = Field(description="(method - baseline) / (teacher - baseline)")
    best: bool | None
    ci_overlaps_best: bool | None
    p50_ms: Number
    p50_iqr_ms: Number
    throughput_img_s: Number
    throughput_iqr_img_s: Number
    params: Number
    flops_per_image: Number
    cost_device: str | None
    cost_measurements: str | None = Field(description='"1" or "<n> per-cell"')
    extra_params: Number = Field(description="trainable parameters the distiller adds")
    train_seconds: Number
    step_ms: Number
    teacher_top1: Number
    baseline_top1: Number
    published_top1: Number
    vs_published: Number
    vs_published_statistic: str | None
    source: str = Field(description="a published row's citation")
    tuned: str | None = Field(
        default=None, description="a tuned row's budget in words; null: its published setting"
    )
    selected: dict[str, Any] | None = Field(
        default=None, description="a tuned row's selected values (loss parameters, recipe keys)"
    )
    selected_val_top1: Number = Field(
        default=None, description="the selected trial's validation top-1 %"
    )
    trials: list[TrialJSON] | None = Field(
        default=None, description="a tuned row's trials, in study order"
    )
    errors: list[str] = Field(description="first lines of failed cells' errors")
    cells: list[str] = Field(description="the cell ids pooled in this row")


class PairJSON(_Closed):
    """The leaderboard of one (dataset, teacher -> student) pair (``Board``)."""

    dataset: str
    teacher: str
    student: str
    variant: str
    title: str
    teacher_top1: Number
    teacher_published: PublishedJSON | None
    baseline_top1: Number
    seeds: list[int]
    student_costs: list[CostJSON] = Field(description="one per device")
    teacher_costs: list[CostJSON]
    rows: list[RowJSON]


class CrossMethodJSON(_Closed):
    method: str
    avg_rank: Number = Field(description="mean rank over the pairs it ran (1 = best)")
    pairs_ranked: int


class CrossCellJSON(_Closed):
    method: str
    pair: str
    top1_mean: Number
    status: str
    rank: Number
    avg_rank: Number
    pairs_ranked: int


class CrossPairJSON(_Closed):
    """Methods x pairs top-1 matrix with average ranks (``CrossPair``)."""

    pairs: list[str]
    methods: list[CrossMethodJSON]
    cells: list[CrossCellJSON]
    teacher: dict[str, Number] = Field(description="pair -> the teacher's top-1")


class RunJSON(_Closed):
    """Records grouped by where and with what they were produced."""

    folder: str
    benchmark: str | None
    config_hash: str | None
    kdbench: str | None
    git: str = Field(description='commit (12 hex digits, "+dirty" if so) or "-"')
    python: str | None
    torch: str | None
    cuda: str | None
    device: str | None
    platform: str | None
    records: int
    failed: int
    first_finished: str | None
    last_finished: str | None


class ProvenanceJSON(_Closed):
    """Where, with what and from which commit one cell ran."""

    cell_id: str
    dataset: str
    pair: str
    method: str
    seed: int | None
    status: str | None
    benchmark: str | None
    config_hash: str | None
    kdbench: str | None
    git: str
    python: str | None
    torch: str | None
    cuda: str | None
    device: str | None
    threads: int | None
    platform: str | None
    dataset_fingerprint: str | None
    finished_at: str | None
    path: str | None


class LeaderboardJSON(_Closed):
    """``kdbench report --format json``: every table and the provenance, for tools."""

    format: Literal[FORMAT]
    confidence: float = Field(description="the confidence level of every interval (0.95)")
    notes: list[str] = Field(description="how to read each column, as the Markdown shows")
    pairs: list[PairJSON]
    cross_pair: CrossPairJSON
    runs: list[RunJSON]
    provenance: list[ProvenanceJSON]
    warnings: list[str]


def leaderboard_schema() -> str:
    """The JSON Schema of ``to_json``'s output, as committed in ``docs/leaderboard.schema.json``."""
    schema = LeaderboardJSON.model_json_schema()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# python -m kdbench.reporting.board_schema > docs/leaderboard.schema.json
if __name__ == "__main__":
    print(leaderboard_schema(), end="")
