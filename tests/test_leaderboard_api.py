"""What a format or command plugin receives: the leaderboard from a results folder, and
its JSON form, whose committed JSON Schema the code and the published results keep."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from kdbench.cli import cli
from kdbench.core.errors import KdbenchError
from kdbench.reporting.render_md import markdown
from kdbench.reports import Board, Leaderboard, Row, leaderboard_schema, load_leaderboard, to_json

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "docs" / "leaderboard.schema.json"
PUBLISHED = ["results/fashion_mnist", "results/digits_cpu", "results/fashion_mnist_tuned"]


def test_committed_leaderboard_schema_equals_the_schema_of_the_code():
    regenerate = "python -m kdbench.reporting.board_schema > docs/leaderboard.schema.json"
    assert SCHEMA.read_text(encoding="utf-8") == leaderboard_schema(), f"regenerate: {regenerate}"


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("folder", PUBLISHED)
def test_json_of_published_results_validates_against_the_committed_schema(folder: str):
    data = json.loads(to_json(load_leaderboard(REPO / folder)))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(data)]
    assert errors == []
    assert data["pairs"] and all(pair["rows"] for pair in data["pairs"])


def test_schema_refuses_a_key_it_does_not_document_and_a_nan():
    data = json.loads(to_json(load_leaderboard(REPO / PUBLISHED[0])))
    data["pairs"][0]["rows"][0]["undocumented"] = 1.0
    assert any("undocumented" in e.message for e in _validator().iter_errors(data))
    del data["pairs"][0]["rows"][0]["undocumented"]
    data["pairs"][0]["rows"][0]["top1_mean"] = "nan"
    assert list(_validator().iter_errors(data))


def test_load_leaderboard_reads_a_results_folder_as_kdbench_report_does(monkeypatch):
    monkeypatch.chdir(REPO)  # the committed tables name the folder as given
    board = load_leaderboard("results/fashion_mnist")
    assert isinstance(board, Leaderboard) and board.warnings == []
    assert isinstance(board.boards[0], Board) and isinstance(board.boards[0].rows[0], Row)
    assert len(board.provenance) == 24 and sum(run["records"] for run in board.runs) == 24
    committed = (REPO / "results/fashion_mnist/leaderboard.md").read_text(encoding="utf-8")
    assert markdown(board) == committed
    shown = CliRunner().invoke(cli, ["report", "results/fashion_mnist"])
    assert shown.exit_code == 0, shown.output
    assert shown.output == markdown(board) + "\n"


def test_load_leaderboard_counts_several_folders_and_can_leave_published_rows_out():
    both = load_leaderboard([REPO / folder for folder in PUBLISHED], use_reference=False)
    assert {b.dataset for b in both.boards} == {"fashion_mnist", "digits"}
    assert all(row.kind == "measured" for b in both.boards for row in b.rows)


def test_load_leaderboard_refuses_a_missing_or_empty_folder_with_one_line(tmp_path: Path):
    with pytest.raises(KdbenchError, match="no such results folder") as missing:
        load_leaderboard(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(missing.value) and "\n" not in str(missing.value)
    (tmp_path / "empty" / "records").mkdir(parents=True)
    with pytest.raises(KdbenchError, match="no records found under") as empty:
        load_leaderboard(tmp_path / "empty")
    assert "\n" not in str(empty.value)
    shown = CliRunner().invoke(cli, ["report", str(tmp_path / "empty")])
    assert shown.exit_code == 2 and "no records found under" in shown.output


def test_records_that_differ_only_in_execution_switches_share_their_pairs_board(tmp_path):
    """A record of another kdbench version spells the recipe's execution switches
    differently (no eval_every, another eval_batch_size): its cell id is the same
    experiment's, so it belongs on the same board, not on a variant of its own."""
    source = REPO / "results" / "digits_cpu"
    (tmp_path / "records").mkdir()
    for path in sorted((source / "records").glob("*.json")):
        (tmp_path / "records" / path.name).write_bytes(path.read_bytes())
    before = load_leaderboard(tmp_path)
    changed = sorted((tmp_path / "records").glob("*.json"))[0]
    record = json.loads(changed.read_text(encoding="utf-8"))
    recipe = record["config"]["recipe"]
    recipe.pop("eval_every")
    recipe["eval_batch_size"] = "auto" if recipe["eval_batch_size"] != "auto" else 256
    changed.write_text(json.dumps(record, indent=2), encoding="utf-8")
    after = load_leaderboard(tmp_path)
    assert [b.title for b in after.boards] == [b.title for b in before.boards]
    assert [b.variant for b in after.boards] == [""] * len(before.boards)
    assert [[(r.label, r.n) for r in b.rows] for b in after.boards] == [
        [(r.label, r.n) for r in b.rows] for b in before.boards
    ]
