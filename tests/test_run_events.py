"""The tracker event type is public: one class under every documented name, torch-free."""

from __future__ import annotations

import subprocess
import sys

import pytest

import kdbench
import kdbench.trackers
from kdbench.engine import trackers as engine_trackers


def test_run_event_is_one_class_under_its_public_and_old_names():
    assert kdbench.RunEvent is kdbench.trackers.RunEvent is engine_trackers.RunEvent
    assert "RunEvent" in kdbench.__all__
    event = kdbench.RunEvent("epoch_ended", "bench", cell_id="c", epoch=1, metrics={"lr": 0.1})
    assert (event.status, event.record, event.params) == (None, None, {})
    with pytest.raises(AttributeError):
        event.kind = "run_finished"  # frozen: one event is handed to every tracker
    assert set(kdbench.trackers.KINDS) == {
        "cell_started", "epoch_ended", "cell_finished", "run_finished",
    }  # fmt: skip


def test_tracker_authors_import_the_event_without_torch():
    code = "import sys, kdbench.trackers; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
