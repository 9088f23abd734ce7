"""BatchNorm folding of the frozen teacher: same function, fewer layers, only where exact."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from kdbench.engine.context import RunContext
from kdbench.engine.folding import fold_batchnorm, foldable_pairs


def _randomise_batchnorms(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, as after training."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.rand(shape, generator=generator) * 2 - 1)
            module.running_var.copy_(torch.rand(shape, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(shape, generator=generator) - 0.5)


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.fixture(scope="module")
def registry():
    return RunContext().plugins.registry


# Expected folds, counted by hand from each architecture:
# - resnet8x4: every BatchNorm follows a convolution whose output nothing else reads
#   (stem 1 + 3 stages x (2 in the block + 1 in the projection shortcut)) = 10 of 10;
# - vgg8: fx cannot trace it (its forward branches on the input size), so the rule for
#   conv -> BatchNorm neighbours inside nn.Sequential finds all 5 of 5;
# - wrn_16_2 (pre-activation): each of the 6 blocks' inner BatchNorm follows its first
#   conv (6), and the stem conv feeds only the first block's BatchNorm, because that
#   block widens 16 -> 32 channels and takes its shortcut after the activation (1); the
#   other blocks' first BatchNorm reads a residual sum and the last one too: 7 of 13.
EXPECTED = {"resnet8x4": (10, 10), "vgg8": (5, 5), "wrn_16_2": (7, 13)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_folded_teacher_computes_the_same_logits(registry, name):
    model = registry.get("teachers", name).obj(num_classes=100, in_channels=3).eval()
    _randomise_batchnorms(model)
    inputs = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(inputs)
    total = _batchnorms(model)
    folded = fold_batchnorm(model)
    assert (folded, total) == EXPECTED[name]
    assert _batchnorms(model) == total - folded
    with torch.no_grad():
        after = model(inputs)
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-5 * before.abs().max().item())


def test_vgg_is_folded_through_the_sequential_rule(registry):
    model = registry.get("teachers", "vgg8").obj(num_classes=10, in_channels=3).eval()
    with pytest.raises(fx.proxy.TraceError, match="control flow"):  # why the rule is needed
        fx.symbolic_trace(model)
    assert ("block0.0", "block0.1") in foldable_pairs(model)


class _Shared(nn.Module):
    """Three convolutions whose BatchNorms may not be folded, and one that may."""

    def __init__(self) -> None:
        super().__init__()
        self.read_twice = nn.Conv2d(3, 4, 3, padding=1)  # output also in a residual sum
        self.bn1 = nn.BatchNorm2d(4)
        self.used_twice = nn.Conv2d(4, 4, 3, padding=1)  # the same weights run twice
        self.bn2 = nn.BatchNorm2d(4)
        self.bn3 = nn.BatchNorm2d(4)
        self.no_stats = nn.Conv2d(4, 4, 1)
        self.bn4 = nn.BatchNorm2d(4, track_running_stats=False)  # batch statistics
        self.plain = nn.Conv2d(4, 4, 1)
        self.bn5 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.read_twice(x)
        y = self.bn1(y) + y
        y = self.bn2(self.used_twice(y)) + self.bn3(self.used_twice(y))
        y = self.bn4(self.no_stats(y))
        return self.bn5(self.plain(y))


def test_only_exact_pairs_are_folded():
    model = _Shared().eval()
    _randomise_batchnorms(model)
    assert foldable_pairs(model) == [("plain", "bn5")]
    inputs = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = model(inputs)
        assert fold_batchnorm(model) == 1
        assert torch.allclose(model(inputs), before, atol=1e-5)
    assert isinstance(model.bn5, nn.Identity) and isinstance(model.bn1, nn.BatchNorm2d)


def test_a_tapped_convolution_keeps_its_batchnorm(registry):
    """A tap on a conv's raw output would see the folded values: that pair stays."""
    model = registry.get("teachers", "resnet8x4").obj(num_classes=10, in_channels=3).eval()
    every = foldable_pairs(model)
    conv, bn = every[0]
    kept = foldable_pairs(model, keep=[conv])
    assert (conv, bn) not in kept and len(kept) == len(every) - 1
    assert fold_batchnorm(model, keep=[bn]) == len(every) - 1


def test_folding_needs_eval_mode(registry):
    model = registry.get("teachers", "resnet8x4").obj(num_classes=10, in_channels=3)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model.train())
