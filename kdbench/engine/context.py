"""What a process needs to run cells: loaded plugins, datasets (cached) and a device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdbench.core.data import DatasetSplits
from kdbench.core.errors import KdbenchError
from kdbench.core.plugins import Plugins, load_plugins
from kdbench.engine.matrix import DatasetSpec, ModelSpec, stable_hash


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise KdbenchError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(requested)


@dataclass
class RunContext:
    """Plugins plus an in-process dataset cache, so a dataset loads once per process."""

    plugins: Plugins = field(default_factory=load_plugins)
    _datasets: dict[str, tuple[DatasetSplits, str]] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """Build once per process and keep (teacher logit caches)."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def dataset(self, spec: DatasetSpec) -> tuple[DatasetSplits, str]:
        """The dataset and its fingerprint (sha256 of its contents)."""
        key = stable_hash([spec.name, spec.params])
        if key not in self._datasets:
            entry = self.plugins.registry.get("datasets", spec.name)
            data = entry.obj(**spec.params)
            self._datasets[key] = (data, data.fingerprint())
        return self._datasets[key]

    def build_model(self, kind: str, spec: ModelSpec, data: DatasetSplits) -> nn.Module:
        entry = self.plugins.registry.get(kind, spec.name)
        return entry.obj(num_classes=data.num_classes, in_channels=data.in_channels, **spec.params)

    def taps(self, kind: str, spec: ModelSpec, model: nn.Module) -> dict[str, str]:
        return self.plugins.registry.get(kind, spec.name).taps_for(model)
