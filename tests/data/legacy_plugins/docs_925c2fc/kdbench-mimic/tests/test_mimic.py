# ruff: noqa
# Verbatim from docs/losses.md at commit 925c2fc: the docs of the last release layout, the commit before the 0.2 layout moved
# kdbench/functional.py, features.py, identity.py and others into subpackages.
# The example distribution's test of its loss.
# tests/test_legacy_plugins.py runs it, unchanged, against today's kdbench.

from my_loss_pkg.plugin import Mimic

from kdbench.testing import check_loss


def test_mimic_keeps_the_harness_contract():
    terms = check_loss(Mimic, {"weight": 2.0})
    assert set(terms) == {"ce", "mimic"} and terms["mimic"] > 0
