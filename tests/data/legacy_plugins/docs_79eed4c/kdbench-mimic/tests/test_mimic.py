# ruff: noqa
# Verbatim from docs/losses.md at commit 79eed4c: the last docs that showed kdbench.features.FeatureTaps to plugin authors.
# The example distribution's test of its loss.
# tests/test_legacy_plugins.py runs it, unchanged, against today's kdbench.

import torch
from kdbench import LossContext, LossInputs
from kdbench.builtin.models_small import cnn
from kdbench.features import FeatureTaps

from my_loss_pkg.plugin import Mimic


def test_mimic_trains_student_and_connector():
    torch.manual_seed(0)
    student, teacher = cnn(10, 1, width=4), cnn(10, 1, width=8).eval()
    taps = {"stage2": "stages.1"}
    loss = Mimic()
    wanted = loss.required_features(list(taps))
    s_taps, t_taps = FeatureTaps(student, taps, wanted), FeatureTaps(teacher, taps, wanted)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    with s_taps, t_taps:
        with torch.no_grad():
            zt = teacher(x)
        zs = student(x)
        fs, ft = s_taps.pop(), t_taps.pop()
    shapes_s = {k: v.shape[1:] for k, v in fs.items()}
    shapes_t = {k: v.shape[1:] for k, v in ft.items()}
    loss.setup(LossContext(10, 16, shapes_s, shapes_t))
    terms = loss(LossInputs(zs, zt, y, torch.arange(16), 0, 1, fs, ft))
    sum(terms.values()).backward()
    assert loss.connector.weight.grad is not None
    assert all(p.grad is not None for p in student.parameters())
