"""What a report-format or command plugin may use: the leaderboard it is handed (its
:class:`Board` per pair, :class:`Row` per method, :class:`CrossPair` matrix), the
leaderboard of a results folder (:func:`load_leaderboard`), its JSON form and that form's
JSON Schema, and the record's JSON Schema.

A format's ``render`` receives a :class:`Leaderboard`; a command builds one with
:func:`load_leaderboard` rather than running ``kdbench report``. This module is the
public door to the reporting layer, so plugins (the built-in ``json`` format and
``schema`` command among them) depend on these names only (docs/plugins.md, "What a
format or command receives"). Import it inside the function that renders:
``kdbench report`` loads the format plugins before it knows which one is wanted.
"""

from __future__ import annotations

from kdbench.records.schema import json_schema
from kdbench.reporting.board_model import Board, CrossPair, Leaderboard, Row, TrialPoint, Tuning
from kdbench.reporting.board_schema import leaderboard_schema
from kdbench.reporting.load import load_leaderboard
from kdbench.reporting.render_json import to_json

__all__ = [
    "Board",
    "CrossPair",
    "Leaderboard",
    "Row",
    "TrialPoint",
    "Tuning",
    "json_schema",
    "leaderboard_schema",
    "load_leaderboard",
    "to_json",
]
