"""Feature taps: per-stage activations taken with forward hooks, not a special forward.

Part of the contract a model registration keeps (what its ``taps`` mean), so it lives in
the core: the engine trains with it, ``kdbench show`` and the plugin kit measure with it,
and plugin authors use it as ``kdbench.testing.FeatureTaps``.

A model registration declares ``taps = {"stage1": "layer1", "stage1_pre": "layer1.relu:in"}``:
each value is a dotted module path; a ``:in`` suffix takes the module's input instead of
its output (the pre-activation before a ReLU module, which some methods need).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from kdbench.core.errors import ConfigError


class FeatureTaps:
    """Collects the named activations of one model while it is in a ``with`` block."""

    def __init__(self, model: nn.Module, taps: Mapping[str, str], wanted: Iterable[str]) -> None:
        self.model = model
        self.wanted = tuple(wanted)
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        modules = dict(model.named_modules())
        self._targets: list[tuple[str, nn.Module, bool]] = []
        for name in self.wanted:
            if name not in taps:
                raise ConfigError(
                    f"the model has no feature tap '{name}'; it declares: "
                    f"{', '.join(taps) or 'none'}"
                )
            path, _, where = taps[name].partition(":")
            if path not in modules:
                raise ConfigError(f"feature tap '{name}' names missing module '{path}'")
            self._targets.append((name, modules[path], where == "in"))

    def __enter__(self) -> FeatureTaps:
        for name, module, take_input in self._targets:
            self._handles.append(module.register_forward_hook(self._hook(name, take_input)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str, take_input: bool):
        def hook(_module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            self.features[name] = args[0] if take_input else output

        return hook

    def pop(self) -> dict[str, torch.Tensor]:
        """The activations of the last forward, and forget them."""
        features, self.features = self.features, {}
        return features
