"""The conformance checks behind :mod:`kdbench.testing`, and the tiny models and data they use.

Each check drives a plugin's object through what the harness does with it and fails with
one :class:`AssertionError` per broken promise, naming the promise and the fix.
"""

from __future__ import annotations

import copy
import pickle
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kdbench.core.data import DatasetSplits, Split
from kdbench.core.features import FeatureTaps
from kdbench.core.image_files import StreamingDataset
from kdbench.core.losses import DistillationLoss, LossContext, LossInputs, feature_pairs, loss_terms

TapsDecl = Mapping[str, str] | Callable[[nn.Module], Mapping[str, str]]


@dataclass
class Tapped:
    """A model and the feature taps its registration declares (``{name: module path}``)."""

    model: nn.Module
    taps: dict[str, str] = field(default_factory=dict)


def tiny_dataset(train: int = 96, test: int = 32) -> DatasetSplits:
    """The first digits of scikit-learn's set: real images, small enough for any test."""
    from kdbench.builtin.datasets_digits import digits

    full = digits()
    return DatasetSplits(
        train=Split(full.train.images[:train], full.train.labels[:train]),
        test=Split(full.test.images[:test], full.test.labels[:test]),
        classes=full.classes,
        mean=full.mean,
        std=full.std,
    )


def registered_taps(plugin: Any, name: str) -> TapsDecl:
    """The taps ``plugin`` declares for model ``name``, read through its ``register_models``
    hook as the harness reads them (a mapping, or a function of the built model)."""
    declared: dict[str, TapsDecl] = {}

    def register(model: str, factory: Any, *, taps: TapsDecl | None = None, **_: Any) -> None:
        declared[model] = taps or {}

    plugin.register_models(register=register)
    assert name in declared, (
        f"{getattr(plugin, '__name__', plugin)}.register_models registers no model '{name}' "
        f"(it registers: {', '.join(declared) or 'none'})"
    )
    return declared[name]


def _tiny_cnn(depth: int, width: int, in_channels: int, num_classes: int) -> Tapped:
    from kdbench.builtin import models_small

    torch.manual_seed(depth)
    model = models_small.cnn(num_classes, in_channels, width=width, depth=depth)
    return Tapped(model.eval(), _resolve_taps(registered_taps(models_small, "cnn"), model))


def tiny_teacher(in_channels: int = 1, num_classes: int = 10) -> Tapped:
    """A 3-stage CNN of width 8: deeper than :func:`tiny_student`, as teachers are."""
    return _tiny_cnn(3, 8, in_channels, num_classes)


def tiny_student(in_channels: int = 1, num_classes: int = 10) -> Tapped:
    """A 2-stage CNN of width 4: its ``stage2`` is its last stage, the teacher's middle one."""
    return _tiny_cnn(2, 4, in_channels, num_classes)


def _inputs(data: DatasetSplits, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x = (data.train.images[:batch].float() / 255 - mean) / std
    return x, data.train.labels[:batch], torch.arange(batch)


def _context(data: DatasetSplits, fs: Mapping, ft: Mapping) -> LossContext:
    return LossContext(
        num_classes=data.num_classes,
        num_train=len(data.train),
        student_feature_shapes={k: tuple(v.shape[1:]) for k, v in fs.items()},
        teacher_feature_shapes={k: tuple(v.shape[1:]) for k, v in ft.items()},
        train_labels=data.train.labels,
    )


@dataclass
class _Step:
    """One training step of a loss, as the harness runs it, kept for the checks."""

    loss: DistillationLoss
    terms: dict[str, torch.Tensor]
    student: nn.Module
    teacher: nn.Module


def _step(
    build: Callable[[], DistillationLoss],
    student: Tapped,
    teacher: Tapped,
    data: DatasetSplits,
    *,
    dtype: torch.dtype = torch.float32,
    batch: int = 16,
    device: str = "cpu",
) -> _Step:
    """Build the loss from a seed, set it up from one dry forward, then one step.

    The teacher runs with gradients on, so a loss that forgets to detach its inputs is
    caught (the harness itself runs the teacher under ``no_grad``).
    """
    torch.manual_seed(0)
    loss = build()
    s_model, t_model = copy.deepcopy(student.model), copy.deepcopy(teacher.model)
    s_model.to(device)
    t_model.to(device)
    x, y, idx = (t.to(device) for t in _inputs(data, batch))
    pairs = (
        feature_pairs(loss, list(student.taps), list(teacher.taps)) if loss.needs_teacher else ()
    )
    for pair in pairs:
        assert pair.student in student.taps, (
            f"required_features asked for student tap '{pair.student}', which the student does "
            f"not declare (it has: {', '.join(student.taps)}); pick from `available`"
        )
        assert pair.teacher in teacher.taps, (
            f"required_features asked for teacher tap '{pair.teacher}', which the teacher does "
            f"not declare (it has: {', '.join(teacher.taps)}); pick from `available`"
        )
    s_taps = FeatureTaps(s_model, student.taps, [p.student for p in pairs])
    t_taps = FeatureTaps(t_model, teacher.taps, [p.teacher for p in pairs])
    with s_taps, t_taps:
        with torch.no_grad():
            s_model.eval()
            t_model.eval()
            s_model(x[:2])
            t_model(x[:2])
        loss.setup(_context(data, s_taps.pop(), t_taps.pop()))
        loss.to(device)
        s_model.train()
        zs, zt = s_model(x), t_model(x) if loss.needs_teacher else None
        fs, ft = s_taps.pop(), t_taps.pop()
    cast = {k: v.to(dtype) for k, v in fs.items()}, {k: v.to(dtype) for k, v in ft.items()}
    inputs = LossInputs(
        student_logits=zs.to(dtype),
        teacher_logits=None if zt is None else zt.to(dtype),
        targets=y,
        indices=idx,
        epoch=0,
        epochs=2,
        student_features=cast[0],
        teacher_features=cast[1],
    )
    terms = loss_terms(loss(inputs))
    return _Step(loss, terms, s_model, t_model)


def _loose_tensors(module: nn.Module) -> list[str]:
    """Tensor attributes that are neither parameters nor buffers: ``.to()`` leaves them."""
    loose = []
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                loose.append(f"{prefix}.{name}" if prefix else name)
    return loose


def check_loss(
    loss_class: Callable[..., DistillationLoss],
    params: Mapping[str, Any] | None = None,
    *,
    student: Tapped | None = None,
    teacher: Tapped | None = None,
    data: DatasetSplits | None = None,
) -> dict[str, torch.Tensor]:
    """Assert the contract a distillation loss keeps with the harness; return its terms.

    Built from ``params`` as ``[losses.<name>]`` would build it, between the tiny
    3-stage teacher and 2-stage student unless others are given: it must subclass
    ``DistillationLoss``, ask only for taps the networks declare, return finite float32
    terms, send gradient to the student (and to its own parameters) and none to the
    teacher, run on bfloat16 inputs, keep every tensor where ``.to()`` moves it, give the
    same terms from the same seed, and pickle.
    """
    params = dict(params or {})
    student, teacher = student or tiny_student(), teacher or tiny_teacher()
    data = data or tiny_dataset()

    def build() -> DistillationLoss:
        return loss_class(**params)

    name = getattr(loss_class, "__name__", repr(loss_class))
    assert isinstance(build(), DistillationLoss), (
        f"{name} must subclass kdbench.DistillationLoss (the harness calls its "
        "required_features, setup and forward)"
    )
    step = _step(build, student, teacher, data)
    assert step.terms, f"{name}.forward returned no terms; return a tensor or a dict of them"
    for term, value in step.terms.items():
        assert isinstance(value, torch.Tensor) and value.numel() == 1, (
            f"{name} term '{term}' must be a scalar tensor, got {type(value).__name__} "
            f"{tuple(getattr(value, 'shape', ()))}; reduce it (mean over the batch)"
        )
        assert torch.isfinite(value).all(), (
            f"{name} term '{term}' is {value.item()} on ordinary inputs; guard divisions "
            "and logarithms (clamp, add an eps)"
        )
        assert value.dtype == torch.float32, (
            f"{name} term '{term}' is {value.dtype} for float32 inputs; return float32 "
            "(compute in the inputs' dtype, or .float() what you cast up)"
        )
    for diag, value in step.loss.pop_diagnostics().items():
        assert diag not in step.terms, (
            f"{name} logs diagnostic '{diag}' under the name of one of its terms; a "
            "diagnostic is watched, not trained on: give it a name of its own"
        )
        detached = isinstance(value, torch.Tensor) and not value.requires_grad
        assert isinstance(value, float) or (detached and value.is_floating_point()), (
            f"{name} diagnostic '{diag}' must be a detached float scalar; report it with self.log"
        )
        assert torch.isfinite(torch.as_tensor(value)).all(), (
            f"{name} diagnostic '{diag}' is {float(value)} on ordinary inputs; guard "
            "divisions and logarithms (clamp, add an eps)"
        )
    total = sum(step.terms.values())
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in step.student.parameters()), (
        f"no gradient reaches the student from {name}; do not detach the student's logits"
    )
    reached = [n for n, p in step.teacher.named_parameters() if p.grad is not None]
    assert not reached, (
        f"{name} sends gradient to the teacher (e.g. {reached[0]}); .detach() the "
        "teacher's logits and features"
    )
    frozen = [n for n, p in step.loss.named_parameters() if p.requires_grad and p.grad is None]
    assert not frozen, (
        f"{name}'s own parameter '{frozen[0]}' gets no gradient; use it in forward or "
        "set requires_grad=False"
    )
    loose = _loose_tensors(step.loss)
    assert not loose, (
        f"{name} keeps tensor attribute '{loose[0]}' outside its parameters and buffers, "
        "so .to(device) leaves it behind; use self.register_buffer"
    )
    again = _step(build, student, teacher, data).terms
    for term, value in step.terms.items():
        assert torch.equal(value.detach(), again[term].detach()), (
            f"{name} term '{term}' differs between two runs from the same seed; draw random "
            "numbers from torch's generator, not Python's or NumPy's"
        )
    try:
        low = _step(build, student, teacher, data, dtype=torch.bfloat16).terms
    except Exception as exc:
        raise AssertionError(
            f"{name} fails on bfloat16 inputs (mixed precision): {type(exc).__name__}: {exc}; "
            "cast to .float() where precision matters"
        ) from exc
    for term, value in low.items():
        assert torch.isfinite(value).all() and value.is_floating_point(), (
            f"{name} term '{term}' is {value} on bfloat16 inputs; cast to .float() first"
        )
    if torch.cuda.is_available():
        _step(build, student, teacher, data, device="cuda")
    for what, obj in (("before setup", build()), ("after setup", step.loss)):
        try:
            pickle.loads(pickle.dumps(obj))
        except Exception as exc:
            raise AssertionError(
                f"{name} cannot be pickled {what} ({type(exc).__name__}: {exc}); executors "
                "send it to other processes - keep lambdas and open files out of attributes"
            ) from exc
    return {term: value.detach() for term, value in step.terms.items()}


def _resolve_taps(taps: TapsDecl | None, model: nn.Module) -> dict[str, str]:
    return dict((taps(model) if callable(taps) else taps) or {})


def check_model(
    factory: Callable[..., nn.Module],
    params: Mapping[str, Any] | None = None,
    *,
    taps: TapsDecl | None = None,
    image_size: tuple[int, int] = (32, 32),
    channels: Iterable[int] = (1, 3),
) -> dict[str, tuple[int, ...]]:
    """Assert a model factory's contract; return each tap's per-image shape (3 channels).

    ``factory(num_classes=, in_channels=, **params)`` must give logits of
    ``num_classes`` for every channel count; every declared tap must name a module that
    runs in ``forward``; ``stageK`` taps must not grow in resolution with K, ``stageK_pre``
    must match ``stageK``'s shape and ``pool`` must be a flat embedding.
    """
    params = dict(params or {})
    name = getattr(factory, "__name__", repr(factory))
    shapes: dict[str, tuple[int, ...]] = {}
    for in_channels in channels:
        torch.manual_seed(0)
        model = factory(num_classes=7, in_channels=in_channels, **params).eval()
        x = torch.randn(2, in_channels, *image_size)
        declared = _resolve_taps(taps, model)
        modules = dict(model.named_modules())
        for tap, path in declared.items():
            assert path.partition(":")[0] in modules, (
                f"{name}: tap '{tap}' names module '{path}', which the model does not have; "
                f"module paths are those of model.named_modules()"
            )
        hooks = FeatureTaps(model, declared, declared)
        with torch.no_grad(), hooks:
            out = model(x)
        assert isinstance(out, torch.Tensor) and tuple(out.shape) == (2, 7), (
            f"{name} with num_classes=7, in_channels={in_channels} returned "
            f"{tuple(getattr(out, 'shape', ()))}; forward must return logits (batch, num_classes)"
        )
        features = hooks.pop()
        silent = [tap for tap in declared if tap not in features]
        assert not silent, (
            f"{name}: tap '{silent[0]}' declares a module that forward never calls; "
            "point it at a module on the forward path"
        )
        shapes = {tap: tuple(t.shape[1:]) for tap, t in features.items()}
    _check_tap_meaning(name, shapes)
    return shapes


def _check_tap_meaning(name: str, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Documented names mean documented places (docs/models.md)."""
    stages = sorted(
        (tap for tap in shapes if re.fullmatch(r"stage\d+", tap)), key=lambda t: int(t[5:])
    )
    areas = [shapes[t][-1] * shapes[t][-2] if len(shapes[t]) == 3 else 0 for t in stages]
    assert areas == sorted(areas, reverse=True), (
        f"{name}: stage taps must follow the network in order (stage1 first, resolution "
        f"never growing); got {', '.join(f'{t} {shapes[t]}' for t in stages)}"
    )
    for tap in shapes:
        if tap.endswith("_pre") and tap.removesuffix("_pre") in shapes:
            pre, post = shapes[tap], shapes[tap.removesuffix("_pre")]
            # Same channels; the same or a larger map (a stage may pool after its ReLU).
            assert len(pre) == len(post) and pre[0] == post[0] and pre[1:] >= post[1:], (
                f"{name}: '{tap}' must be the pre-activation of '{tap.removesuffix('_pre')}' "
                f"(same channels, no smaller a map); got {pre} and {post}"
            )
    if "pool" in shapes:
        assert len(shapes["pool"]) == 1, (
            f"{name}: tap 'pool' must be the flat embedding (batch, dim); got {shapes['pool']}"
        )


def check_dataset(
    factory: Callable[..., DatasetSplits | StreamingDataset],
    params: Mapping[str, Any] | None = None,
) -> DatasetSplits | StreamingDataset:
    """Assert a dataset factory's contract and return its splits.

    ``factory(**params)`` must return ``DatasetSplits``: uint8 NCHW images of one shape
    in both splits, int64 labels in ``range(len(classes))``, a mean and std per channel;
    or ``StreamingDataset``: the same of its labels, mean and std, and files that exist.
    """
    name = getattr(factory, "__name__", repr(factory))
    data = factory(**dict(params or {}))
    assert isinstance(data, DatasetSplits | StreamingDataset), (
        f"{name} returned {type(data).__name__}; return kdbench.DatasetSplits or "
        "kdbench.StreamingDataset"
    )
    for split_name, split in (("train", data.train), ("test", data.test)):
        assert len(split) > 0, f"{name}: the {split_name} split is empty"
        if isinstance(data, StreamingDataset):
            missing = [str(split.path(i)) for i in range(len(split)) if not split.path(i).is_file()]
            assert not missing, f"{name}: {split_name} files do not exist: {missing[:3]}"
        else:
            _check_tensors(name, split_name, split, data)
        assert split.labels.dtype == torch.int64, (
            f"{name}: {split_name} labels are {split.labels.dtype}; use torch.int64"
        )
        low, high = int(split.labels.min()), int(split.labels.max())
        assert low >= 0 and high < data.num_classes, (
            f"{name}: {split_name} labels span {low}..{high} but there are "
            f"{data.num_classes} classes; labels must be 0..{data.num_classes - 1}"
        )
    channels = data.in_channels
    assert len(data.mean) == channels and len(data.std) == channels, (
        f"{name}: mean and std need one value per channel ({channels}); got "
        f"{len(data.mean)} and {len(data.std)}"
    )
    assert all(s > 0 for s in data.std), f"{name}: std must be positive, got {data.std}"
    return data


def _check_tensors(name: str, split_name: str, split: Split, data: DatasetSplits) -> None:
    assert split.images.dtype == torch.uint8, (
        f"{name}: {split_name} images are {split.images.dtype}; store uint8 0..255 "
        "(the harness normalises with mean/std)"
    )
    assert split.images.shape[1:] == data.train.images.shape[1:], (
        f"{name}: {split_name} images are {tuple(split.images.shape[1:])}, train images "
        f"{tuple(data.train.images.shape[1:])}; both splits need one (C, H, W)"
    )


@dataclass(frozen=True)
class _Job:
    """A stand-in for a cell job: executors look at its device and pass it to ``run``."""

    value: int
    device: str = "cpu"


def _double(unit: Any, **_: Any) -> Any:
    """The stand-in ``run``: picklable, so process executors can ship it (with a context)."""
    if isinstance(unit, list):
        return [2 * job.value for job in unit]
    return 2 * unit.value


def check_executor(
    executor_class: Callable[..., Any], params: Mapping[str, Any] | None = None
) -> None:
    """Assert an executor's contract: ``map(units, run)`` yields one ``run(unit)`` per unit.

    Units are jobs and lists of jobs (lockstep groups), in any order of completion;
    optional ``start(out_dir)`` and ``close()`` are called around the run.
    """
    import tempfile

    name = getattr(executor_class, "__name__", repr(executor_class))
    executor = executor_class(**dict(params or {}))
    assert callable(getattr(executor, "map", None)), f"{name} needs a map(units, run) method"
    units: list[Any] = [_Job(1), [_Job(2), _Job(3)], _Job(4)]
    with tempfile.TemporaryDirectory() as out_dir:
        if hasattr(executor, "start"):
            executor.start(out_dir)
        try:
            results = list(executor.map(units, _double))
        finally:
            if hasattr(executor, "close"):
                executor.close()
    expected = [_double(unit) for unit in units]
    assert sorted(map(str, results)) == sorted(map(str, expected)), (
        f"{name}.map yielded {results} for units whose results are {expected}; yield "
        "run(unit) exactly once per unit"
    )
