"""Figure details a reader relies on: axis notes that are true, readable cost ticks."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from test_report_coverage import board_set

from kdbench.reporting.plots import _cost_axis, bars


def test_the_not_from_zero_note_appears_only_when_the_axis_is_cut():
    high = board_set({(4, "ce"): 70.0, (4, "kd"): 71.0}).boards[0]
    low = board_set({(4, "ce"): 0.4, (4, "kd"): 1.0}).boards[0]
    cut, whole = bars(high).axes[0], bars(low).axes[0]
    assert cut.get_ylim()[0] > 0 and "does not start at 0" in cut.get_ylabel()
    assert whole.get_ylim()[0] == 0 and "does not start at 0" not in whole.get_ylabel()


def test_cost_axes_are_logarithmic_only_across_a_decade_with_major_labels_only():
    from matplotlib.figure import Figure

    narrow, wide = Figure().add_subplot(), Figure().add_subplot()
    narrow.plot([1.1, 2.2], [1, 2])
    wide.plot([0.1, 30.0], [1, 2])
    _cost_axis(narrow, [1.1, 2.2], "latency")
    _cost_axis(wide, [0.1, 30.0], "latency")
    assert narrow.get_xscale() == "linear" and "log scale" not in narrow.get_xlabel()
    assert wide.get_xscale() == "log" and "log scale" in wide.get_xlabel()
    FigureCanvasAgg(wide.figure).draw()
    minor = [t.get_text() for t in wide.xaxis.get_minorticklabels() if t.get_text()]
    assert minor == []
    majors = [t.get_text() for t in wide.xaxis.get_majorticklabels() if t.get_text()]
    assert 2 <= len(majors) <= 6
