"""pytest fixtures for plugin tests, registered through the ``pytest11`` entry point.

Imports nothing heavy: torch loads when a test first asks for a fixture, so projects
that have kdbench installed but never use these pay nothing at collection.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_dataset() -> Any:
    """96 training and 32 test digits (8x8, one channel, 10 classes) as ``DatasetSplits``."""
    from kdbench.testing import tiny_dataset as build

    return build()


@pytest.fixture
def tiny_teacher() -> Any:
    """A 3-stage CNN (taps ``stage1``..``stage3``, ``stageK_pre``, ``pool``), in eval mode."""
    from kdbench.testing import tiny_teacher as build

    return build()


@pytest.fixture
def tiny_student() -> Any:
    """A 2-stage CNN, shallower than :func:`tiny_teacher`, with the same kinds of taps."""
    from kdbench.testing import tiny_student as build

    return build()
