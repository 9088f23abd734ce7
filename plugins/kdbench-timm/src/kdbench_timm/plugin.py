"""The plugin module named by the ``kdbench`` entry point: timm models as teachers and students.

Every name in ``timm.list_models()`` is registered as ``timm/<name>``. Listing names is
cheap; a model is only built, by ``timm.create_model``, when a cell needs it, and timm
itself fits the stem to the dataset's channels and the classifier to its classes.
Feature taps come from timm's own ``feature_info``, so they follow each architecture
without a table kept here.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import timm
from torch import nn

from kdbench import KdbenchError, hookimpl

PREFIX = "timm/"


def build(
    name: str,
    num_classes: int,
    in_channels: int,
    *,
    pretrained: bool = False,
    checkpoint: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """timm ``name`` fitted to the dataset; ``checkpoint`` loads a local weights file.

    Other keyword arguments (``drop_rate``, ``drop_path_rate``, ...) go to
    ``timm.create_model`` unchanged. A checkpoint goes through timm's
    ``pretrained_cfg_overlay=dict(file=...)``, so it gets the same adaptation as timm's
    own weights: a classifier of another class count is dropped and a stem of another
    channel count converted.
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise KdbenchError(
                f"checkpoint '{checkpoint}' for timm model '{name}' is not a file "
                f"(relative paths are resolved from the working directory)"
            )
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
        kwargs["pretrained_cfg_overlay"] = overlay | {"file": str(path)}
        pretrained = True
    create = partial(
        timm.create_model, name, num_classes=num_classes, in_chans=in_channels, **kwargs
    )
    if not pretrained:
        return create(pretrained=False)
    try:
        return create(pretrained=True)
    except TypeError:
        raise  # a parameter the model does not take, not a weights problem
    except Exception as exc:  # noqa: BLE001 - hub, download and file errors have many types
        reason = f"{type(exc).__name__}: {str(exc).rstrip('. ')}"
        if checkpoint is not None:
            raise KdbenchError(
                f"could not load checkpoint '{checkpoint}' into timm model '{name}': {reason}. "
                f"It should be a state_dict of '{name}' saved with torch.save (.pth) or "
                f"safetensors (.safetensors)."
            ) from exc
        raise KdbenchError(
            f"could not load pretrained weights for timm model '{name}': {reason}. Without a "
            f"network, timm only finds weights already in its cache: run "
            f"timm.create_model('{name}', pretrained=True) once where there is a network "
            f"(weights land under HF_HOME, or TORCH_HOME for those timm fetches by URL) and "
            f'reuse that cache, or give a local file: checkpoint = "path/to/weights.pth" '
            f"(or .safetensors)."
        ) from exc


def _feature_levels(model: nn.Module) -> list[dict[str, Any]]:
    """timm's ``feature_info`` as a list of dicts (a list, or a ``FeatureInfo`` object)."""
    info = getattr(model, "feature_info", None) or []
    if hasattr(info, "get_dicts"):
        info = info.get_dicts()
    return [level for level in info if isinstance(level, Mapping)]


def _path_of(model: nn.Module, target: nn.Module) -> str | None:
    return next((path for path, module in model.named_modules() if module is target), None)


def feature_taps(model: nn.Module) -> dict[str, str]:
    """``stage1..stageN`` from timm's feature levels, and ``pool`` from the classifier's input.

    ``stageK`` is the output of timm's K-th feature level (the module behind the K-th map
    ``features_only=True`` returns), so for many CNNs ``stage1`` is the stride-2 stem.
    ``pool`` is the input of a linear classifier: the ``(B, D)`` embedding whichever
    module produced it (``global_pool`` in ResNets, a ``flatten`` after the conv head in
    MobileNetV3, the class token in ViTs). Other heads (conv, distilled pairs) get none.
    """
    modules = dict(model.named_modules())
    levels = [level.get("module") or "" for level in _feature_levels(model)]
    # Some models (HRNet, Twins, MViTv2) name feature levels after their features_only
    # wrapper rather than real modules; numbering only the levels that resolve would then
    # shift stageK, so such a model declares no stages at all.
    resolved = all(path and path in modules for path in levels)
    taps = {f"stage{k}": path for k, path in enumerate(levels, start=1)} if resolved else {}
    get_classifier = getattr(model, "get_classifier", None)
    classifier = get_classifier() if callable(get_classifier) else None
    path = _path_of(model, classifier) if isinstance(classifier, nn.Linear) else None
    # CLIP ResNets project every token inside an attention pool: no (B, D) input there.
    parent = model.get_submodule(path.rpartition(".")[0]) if path else None
    if path and "AttentionPool" not in type(parent).__name__:
        taps["pool"] = f"{path}:in"
    return taps


def _factory(name: str) -> partial[nn.Module]:
    """A picklable factory for one model name (built only when called)."""
    factory = partial(build, name)
    factory.__doc__ = f"timm {name} (timm.create_model)"
    return factory


@hookimpl
def register_models(register):
    for name in timm.list_models():
        register(
            f"{PREFIX}{name}",
            _factory(name),
            taps=feature_taps,
            description=f"timm {name} (timm.create_model)",
        )
