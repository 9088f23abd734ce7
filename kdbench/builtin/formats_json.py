"""The ``json`` report format, registered through the format hook like any plugin's."""

from __future__ import annotations

from typing import Any

from kdbench import hookimpl


def leaderboard_json(board_set: Any) -> str:
    """Everything, for tools: pairs with rows, the cross-pair matrix, runs, warnings."""
    from kdbench.reports import to_json  # the reporting layer, loaded when a report is made

    return to_json(board_set)


@hookimpl
def register_formats(register):
    register(
        "json",
        leaderboard_json,
        filename="leaderboard.json",
        description="every table and the provenance as one JSON document, for tools",
    )
