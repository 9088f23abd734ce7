"""A run's own random state, swapped in around its steps.

Each student of a lockstep group draws from its own generators (dropout, a loss's
sampling) exactly as it would alone, so a group's records equal lone cells' records.
"""

from __future__ import annotations

from typing import Any

import torch


class RngState:
    """A private copy of torch's global random state (CPU, and CUDA when in use).

    Captured when a run is built; restored before each of its steps and captured after,
    so dropout and other global draws of one student never shift another's.
    """

    def __init__(self) -> None:
        self.capture()

    def capture(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)

    def state_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "cuda": self.cuda}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cpu, self.cuda = state["cpu"], state["cuda"]
