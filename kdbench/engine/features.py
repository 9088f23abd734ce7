"""Feature taps for the engine: the core's :class:`FeatureTaps`, kept importable here."""

from __future__ import annotations

from kdbench.core.features import FeatureTaps

__all__ = ["FeatureTaps"]
