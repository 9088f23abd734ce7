"""BatchNorm folding: a frozen teacher's BatchNorms merged into the convolutions before them.

In inference mode a BatchNorm is an affine map per channel, so ``bn(conv(x))`` equals
one convolution with rescaled weights and a bias. Folding saves a pass over every
activation per layer (memory-bound work that matters on a GPU) and changes only
floating-point rounding. It is done where it is exact: the BatchNorm is the only
consumer of a convolution that runs once, both use running statistics, and no feature
tap reads the convolution's raw output or the BatchNorm's input. The pairs are found
in the ``torch.fx`` graph; in models that cannot be traced (data-dependent control
flow), a convolution directly followed by a BatchNorm inside an ``nn.Sequential`` is
still foldable.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_PAIRS = (
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv3d, nn.BatchNorm3d),
)


def foldable_pairs(model: nn.Module, keep: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(conv, batchnorm)`` module paths that can be folded exactly.

    ``keep`` names modules whose inputs or outputs someone observes (feature taps); a
    pair touching one of them is left alone.
    """
    modules = dict(model.named_modules())
    # A module reachable under two paths runs in two places: never fold it.
    paths = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    keep = set(keep)

    def exact(conv_path: str, bn_path: str) -> bool:
        conv, bn = modules[conv_path], modules[bn_path]
        return (
            any(isinstance(conv, c) and type(bn) is b for c, b in _PAIRS)
            and paths[id(conv)] == paths[id(bn)] == 1
            and bn.track_running_stats
            and bn.running_mean is not None
            and {conv_path, bn_path}.isdisjoint(keep)
        )

    candidates = _traced_pairs(model) or _sequential_pairs(model)
    return [pair for pair in candidates if exact(*pair)]


def _traced_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Module calls whose only input is the output of a module called once and nowhere else."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - untraceable: fall back to the Sequential rule
        return []
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if (
            isinstance(source, fx.Node)
            and source.op == "call_module"
            and len(source.users) == 1
            and calls[source.target] == calls[node.target] == 1
        ):
            pairs.append((source.target, node.target))
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Neighbours in a plain ``nn.Sequential``: the first's output goes to the second only."""
    pairs = []
    for path, module in model.named_modules():
        if type(module).forward is not nn.Sequential.forward:
            continue
        names = [f"{path}.{name}" if path else name for name, _ in module.named_children()]
        pairs += itertools.pairwise(names)
    return pairs


@torch.no_grad()
def fold_batchnorm(model: nn.Module, keep: Iterable[str] = ()) -> int:
    """Fold every exactly foldable BatchNorm into its convolution, in place.

    The model must be in eval mode and stay there (it is a frozen teacher). Module
    paths do not change: each convolution is replaced by its folded copy and each
    BatchNorm by :class:`~torch.nn.Identity`, so taps and hooks by path still work.
    Returns the number of BatchNorms folded.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    pairs = foldable_pairs(model, keep)
    for conv_path, bn_path in pairs:
        conv, bn = model.get_submodule(conv_path), model.get_submodule(bn_path)
        _replace(model, conv_path, fuse_conv_bn_eval(conv, bn))
        _replace(model, bn_path, nn.Identity())
    return len(pairs)


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)
