"""Reference CIFAR teacher files: every zoo model loads them as they are and computes
the reference's logits; weights kdbench saves are in the same layout; bad files are
one clear line."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdbench.builtin.cifar_zoo import MODELS
from kdbench.core.errors import KdbenchError
from kdbench.engine.checkpoints import load_weights, read_state_dict
from kdbench.engine.matrix import DatasetSpec, ModelSpec, TeacherSpec
from kdbench.engine.teachers import load_teacher, provision

REFERENCE = Path(__file__).parents[1] / "results" / "reference"
PEER_KEYS: dict[str, list[tuple[str, list[int]]]] = json.loads(
    (REFERENCE / "repdistiller_state_dict_keys.json").read_text()
)
# State-dict keys of kdbench's first zoo layout (one model per family and variant),
# written by that code before the modules took the reference names.
FIRST_LAYOUT_KEYS: dict[str, list[str]] = json.loads(
    (Path(__file__).parent / "data" / "cifar_zoo_first_layout_keys.json").read_text()
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@cache
def peer_state(name: str) -> dict[str, torch.Tensor]:
    """A state dict in the reference layout (keys and shapes from the key file), filled
    with random values of a trained network's scale, so logits stay of order one."""
    generator = torch.Generator().manual_seed(len(name))
    state = {}
    for key, shape in PEER_KEYS[name]:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(240 * 782)
            continue
        kind = key.rsplit(".", 1)[1]
        uniform = torch.rand(shape, generator=generator)
        if kind == "running_var" or (kind == "weight" and len(shape) == 1):
            state[key] = uniform + 0.5  # positive variances, BN scales around 1
        elif kind in ("bias", "running_mean"):
            state[key] = uniform - 0.5
        else:  # conv and linear weights, scaled by fan-in
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
    return state


def _optimizer_state() -> dict:
    return {"state": {}, "param_groups": [{"lr": 0.05, "momentum": 0.9, "params": [0, 1]}]}


# How training scripts store weights: bare, under a key, RepDistiller's best and last
# files (the last with its argparse options), and a data-parallel model's keys.
WRAPPERS = {
    "bare": lambda state: state,
    "model": lambda state: {"model": state},
    "state_dict": lambda state: {"state_dict": state, "epoch": 240},
    "net": lambda state: {"net": state, "acc": 75.6, "epoch": 239},
    "best": lambda state: {
        "epoch": 239,
        "model": state,
        "best_acc": torch.tensor(75.61),
        "optimizer": _optimizer_state(),
    },
    "last": lambda state: {
        "opt": argparse.Namespace(model="resnet32x4", learning_rate=0.05, lr_decay_epochs=[150]),
        "model": state,
        "optimizer": _optimizer_state(),
    },
    "data_parallel": lambda state: {"model": {f"module.{k}": v for k, v in state.items()}},
}
# The published teachers predate PyTorch 1.6's zip format: files in the old format too.
FORMATS = {"zip": True, "pre-1.6": False}


def _build(name: str) -> nn.Module:
    return MODELS[name](num_classes=100, in_channels=3).eval()


@pytest.mark.parametrize("name", list(MODELS))
def test_every_zoo_model_loads_reference_files_in_every_wrapper(name, tmp_path):
    state = peer_state(name)
    model = _build(name)
    for (wrapper, wrap), (layout, zipped) in itertools.product(WRAPPERS.items(), FORMATS.items()):
        path = tmp_path / f"{wrapper}-{layout}.pth"
        torch.save(wrap(state), path, _use_new_zipfile_serialization=zipped)
        with torch.no_grad():  # forget the previous wrapper's weights
            for tensor in model.state_dict().values():
                tensor.zero_()
        load_weights(model, read_state_dict(path), path, name)
        loaded = model.state_dict()
        assert list(loaded) == list(state), path.name
        assert all(torch.equal(loaded[k], v) for k, v in state.items()), path.name


@pytest.mark.parametrize("name", list(MODELS))
def test_weights_kdbench_saves_have_exactly_the_reference_keys(name, tmp_path):
    path = tmp_path / "saved.pt"
    torch.save(MODELS[name](num_classes=100, in_channels=3).state_dict(), path)
    saved = torch.load(path, weights_only=True)
    assert [(k, list(v.shape)) for k, v in saved.items()] == [
        (k, shape) for k, shape in PEER_KEYS[name]
    ]


@pytest.mark.parametrize("name", sorted(FIRST_LAYOUT_KEYS))
def test_files_in_the_first_zoo_layout_still_load(name, tmp_path):
    """Teacher caches written before the rename hold the same tensors in the same
    order under the old names; they load into the renamed modules."""
    state = peer_state(name)
    old = dict(zip(FIRST_LAYOUT_KEYS[name], state.values(), strict=True))
    assert set(old) != set(state)
    path = tmp_path / "cached.pt"
    torch.save(old, path)
    model = _build(name)
    load_weights(model, read_state_dict(path), path, name)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


# --- same logits as the reference definitions, computed independently ---------------


def _bn(x: torch.Tensor, s: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return F.batch_norm(
        x,
        s[f"{prefix}.running_mean"],
        s[f"{prefix}.running_var"],
        s[f"{prefix}.weight"],
        s[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def _resnet_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """RepDistiller's CIFAR ResNet: conv-BN-ReLU stem, basic blocks (downsample = 1x1
    conv + BN where the shape changes, stride 2 in the first block of stages 2 and 3),
    ReLU after the residual sum, global average pool, fc."""
    x = F.relu(_bn(F.conv2d(x, s["conv1.weight"], padding=1), s, "bn1"))
    for stage in (1, 2, 3):
        block = 0
        while f"layer{stage}.{block}.conv1.weight" in s:
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            out = F.conv2d(x, s[f"{p}.conv1.weight"], stride=stride, padding=1)
            out = F.relu(_bn(out, s, f"{p}.bn1"))
            out = _bn(F.conv2d(out, s[f"{p}.conv2.weight"], padding=1), s, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in s:
                shortcut = F.conv2d(x, s[f"{p}.downsample.0.weight"], stride=stride)
                shortcut = _bn(shortcut, s, f"{p}.downsample.1")
            else:
                shortcut = x
            x = F.relu(out + shortcut)
            block += 1
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, s["fc.weight"], s["fc.bias"])


def _wrn_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """RepDistiller's Wide ResNet: conv stem; pre-activation blocks where a block that
    changes shape activates its input once for both the conv path and the 1x1
    convShortcut, and one that keeps it adds the raw input; final BN-ReLU, pool, fc."""
    x = F.conv2d(x, s["conv1.weight"], padding=1)
    for group in (1, 2, 3):
        block = 0
        while f"block{group}.layer.{block}.conv1.weight" in s:
            p = f"block{group}.layer.{block}"
            stride = 2 if group > 1 and block == 0 else 1
            act = F.relu(_bn(x, s, f"{p}.bn1"))
            out = F.conv2d(act, s[f"{p}.conv1.weight"], stride=stride, padding=1)
            out = F.relu(_bn(out, s, f"{p}.bn2"))
            out = F.conv2d(out, s[f"{p}.conv2.weight"], padding=1)
            if f"{p}.convShortcut.weight" in s:
                x = F.conv2d(act, s[f"{p}.convShortcut.weight"], stride=stride) + out
            else:
                x = x + out
            block += 1
    x = F.relu(_bn(x, s, "bn1"))
    x = F.avg_pool2d(x, 8).flatten(1)
    return F.linear(x, s["fc.weight"], s["fc.bias"])


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("resnet8x4", _resnet_reference),
        ("resnet20", _resnet_reference),
        ("wrn_16_2", _wrn_reference),
        ("wrn_40_1", _wrn_reference),
    ],
)
def test_loaded_model_gives_the_reference_logits(name, reference, tmp_path):
    path = tmp_path / "ckpt_epoch_240.pth"
    torch.save({"model": peer_state(name)}, path)
    model = _build(name)
    load_weights(model, read_state_dict(path), path, name)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(peer_state(name), x)
        logits = model(x)
    assert expected.abs().max() > 0.1  # a real signal, not a vanishing one
    assert torch.allclose(logits, expected, rtol=0, atol=1e-5)


# --- files that are not usable weights -------------------------------------------


class Payload:
    """A class a weights file has no business pickling."""


def _one_line_naming(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_a_pickled_object_of_an_unknown_class_is_refused(tmp_path):
    path = tmp_path / "payload.pth"
    torch.save({"model": peer_state("resnet8"), "extra": Payload()}, path)
    with pytest.raises(KdbenchError) as exc:
        read_state_dict(path)
    message = _one_line_naming(exc, path)
    assert "refused" in message and f"{__name__}.Payload" in message


def test_a_truncated_file_is_one_line(tmp_path):
    whole, path = tmp_path / "whole.pth", tmp_path / "truncated.pth"
    torch.save({"model": peer_state("resnet8")}, whole)
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(KdbenchError) as exc:
        read_state_dict(path)
    assert "cannot read" in _one_line_naming(exc, path)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: None, "does not exist"),
        (lambda p: torch.save([torch.zeros(2)], p), "holds no state_dict"),
        (lambda p: torch.save({"model": {}}, p), "holds no state_dict"),
    ],
    ids=["empty", "directory", "missing", "list", "empty-dict"],
)
def test_unusable_paths_are_one_line_naming_the_file(tmp_path, make, expected):
    path = tmp_path / "teacher.pth"
    make(path)
    with pytest.raises(KdbenchError) as exc:
        read_state_dict(path)
    assert expected in _one_line_naming(exc, path)


@pytest.mark.parametrize(
    ("file_model", "model", "expected"),
    [
        ("resnet8", "resnet14", "missing keys: layer1.1.bn1.bias"),
        ("resnet8", "resnet8x4", "shape mismatches (checkpoint vs model): conv1.weight"),
        ("wrn_16_2", "resnet8", "unexpected keys: block1.layer.0.bn1.bias"),
    ],
)
def test_a_file_of_another_architecture_is_one_line(tmp_path, file_model, model, expected):
    path = tmp_path / f"{file_model}.pth"
    torch.save({"model": peer_state(file_model)}, path)
    with pytest.raises(KdbenchError) as exc:
        load_weights(_build(model), read_state_dict(path), path, model)
    message = _one_line_naming(exc, path)
    assert f"does not fit model '{model}'" in message and expected in message


# --- files as the peers write them at the end of training ------------------------------
#
# Both peers decay the learning rate with numpy (``steps = np.sum(epoch >
# np.asarray(decay_epochs))``; ``lr = base * rate ** steps``), so from the first decay on
# the optimizer state they save holds a ``numpy.float64``; their accuracies are tensors.


def _decayed_optimizer(state: dict[str, torch.Tensor]) -> dict:
    """An SGD optimizer's state after a step and RepDistiller's/mdistiller's decay at 240."""
    params = [nn.Parameter(t.float().clone()) for t in list(state.values())[:2]]
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    sum((p**2).sum() for p in params).backward()
    optimizer.step()
    steps = np.sum(np.asarray([150, 180, 210]) < 240)  # the peers' epoch > milestones
    for group in optimizer.param_groups:
        group["lr"] = 0.05 * (0.1**steps)
    assert type(optimizer.param_groups[0]["lr"]) is np.float64
    return optimizer.state_dict()


# RepDistiller's train_teacher.py at epoch 240 (ckpt_epoch_240, best, last) and
# mdistiller's trainer (its full training file, the distiller's keys under DataParallel,
# and the student-only file).
PEER_FILES = {
    "repdistiller-ckpt_epoch_240": lambda s, opt: {
        "epoch": 240, "model": s, "accuracy": torch.tensor(73.26), "optimizer": opt,
    },
    "repdistiller-best": lambda s, opt: {
        "epoch": 240, "model": s, "best_acc": torch.tensor(73.5), "optimizer": opt,
    },
    "repdistiller-last": lambda s, opt: {
        "opt": argparse.Namespace(model="resnet8", learning_rate=0.05, lr_decay_rate=0.1),
        "model": s,
        "optimizer": opt,
    },
    "mdistiller-epoch_240": lambda s, opt: {
        "epoch": 240,
        "model": {f"module.student.{k}": v for k, v in s.items()},
        "optimizer": opt,
        "best_acc": torch.tensor(73.5),
    },
    "mdistiller-student_best": lambda s, opt: {"model": s},
}  # fmt: skip


@pytest.fixture(scope="module")
def cifar_files(tmp_path_factory):
    """A CIFAR-100 folder in torchvision's layout (a few images), and a plugin context."""
    from test_datasets_files import write_cifar100

    from kdbench.engine.context import RunContext

    root = tmp_path_factory.mktemp("cifar")
    write_cifar100(root)
    return RunContext(), DatasetSpec("cifar100", {"root": str(root)})


@pytest.mark.parametrize("name", list(MODELS))
def test_every_zoo_model_loads_the_peers_decayed_training_files(name, cifar_files, tmp_path):
    """Through the teacher-checkpoint path (provision and the cells' load), every layout."""
    context, dataset = cifar_files
    state = peer_state(name)
    optimizer = _decayed_optimizer(state)
    data, _ = context.dataset(dataset)
    for layout, wrap in PEER_FILES.items():
        path = tmp_path / f"{layout}.pth"
        torch.save(wrap(state, optimizer), path)
        spec = TeacherSpec(ModelSpec(name), dataset, "checkpoint", {}, 0, str(path), "sha")
        info = provision(spec, context, tmp_path / layout, torch.device("cpu"))
        assert info["source"] == "checkpoint" and 0 <= info["top1"] <= 100, layout
        loaded = load_teacher(spec, context, data, path, torch.device("cpu")).state_dict()
        assert list(loaded) == list(state), layout
        assert all(torch.equal(loaded[k], v) for k, v in state.items()), layout


def test_a_decayed_file_loads_through_the_cli(tmp_path):
    """RepDistiller's ckpt_epoch_240.pth, numpy learning rate and all, is a teacher."""
    from test_teachers import run, with_checkpoint

    teacher = MODELS["resnet8"](num_classes=10, in_channels=1).state_dict()
    path = tmp_path / "ckpt_epoch_240.pth"
    torch.save(
        PEER_FILES["repdistiller-ckpt_epoch_240"](teacher, _decayed_optimizer(teacher)), path
    )
    bench = with_checkpoint(tmp_path, path.name, "resnet8")
    result = run("teachers", "train", str(bench), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    [meta] = [json.loads(p.read_text()) for p in (tmp_path / "out" / "teachers").glob("*.json")]
    assert meta["source"] == "checkpoint" and meta["weights"].endswith(path.name)


def test_numpy_1_files_load_too(tmp_path):
    """Numpy 1 pickles the scalar as numpy.core.multiarray.scalar (legacy format here:
    its pickle is plain bytes in the file, so the name can be put back)."""
    state = peer_state("resnet8")
    path = tmp_path / "ckpt_epoch_240.pth"
    wrapped = PEER_FILES["repdistiller-ckpt_epoch_240"](state, _decayed_optimizer(state))
    torch.save(wrapped, path, _use_new_zipfile_serialization=False)
    new, old = b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"
    assert path.read_bytes().count(new) == 1
    path.write_bytes(path.read_bytes().replace(new, old))
    loaded = read_state_dict(path)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


class Shell:
    """Pickles as a call of os.system: what a hostile weights file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (lambda marker: Shell(marker), "system"),  # posix.system / nt.system
        (lambda marker: os.system, "system"),
        (lambda marker: np.zeros(3), "numpy._core.multiarray._reconstruct"),
        (lambda marker: np.array([os.sep], dtype=object)[0:1], "_reconstruct"),
    ],
    ids=["os.system-call", "os.system", "numpy-array", "object-array"],
)
def test_any_other_global_beside_a_numpy_lr_is_refused_in_one_line(tmp_path, extra, named):
    state = peer_state("resnet8")
    marker = tmp_path / "ran"
    path = tmp_path / "ckpt_epoch_240.pth"
    wrapped = PEER_FILES["repdistiller-ckpt_epoch_240"](state, _decayed_optimizer(state))
    torch.save({**wrapped, "extra": extra(marker)}, path)
    with pytest.raises(KdbenchError) as exc:
        read_state_dict(path)
    message = _one_line_naming(exc, path)
    assert "is refused" in message and named in message
    assert not marker.exists()
