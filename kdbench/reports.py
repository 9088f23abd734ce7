"""What a report-format or command plugin may use: the leaderboard it is handed, its
JSON form and the record's JSON Schema.

A format's ``render`` receives a :class:`Leaderboard`; this module is the public door to
the reporting layer, so plugins (the built-in ``json`` format and ``schema`` command
among them) depend on these names only. Import it inside the function that renders:
``kdbench report`` loads the format plugins before it knows which one is wanted.
"""

from __future__ import annotations

from kdbench.records.schema import json_schema
from kdbench.reporting.board_model import Leaderboard
from kdbench.reporting.render_json import to_json

__all__ = ["Leaderboard", "json_schema", "to_json"]
