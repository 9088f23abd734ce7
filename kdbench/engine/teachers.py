"""Teacher provisioning: each distinct teacher is had once, then shared by every cell.

A teacher is trained by the harness with the benchmark's teacher recipe, or loaded from
a checkpoint file. Trained weights are cached in ``<out>/teachers/<id>.pt``, where the
id hashes everything that determines them, so a later run (or another cell) reuses
them. Whatever the source, the teacher's test accuracy is measured on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdbench.core.data import DatasetSplits
from kdbench.core.errors import KdbenchError
from kdbench.core.losses import CrossEntropy
from kdbench.engine.batches import Augment
from kdbench.engine.checkpoints import load_weights, read_state_dict
from kdbench.engine.context import RunContext
from kdbench.engine.evaluate import evaluate
from kdbench.engine.events import Progress
from kdbench.engine.matrix import TeacherSpec, file_sha256
from kdbench.engine.measure import count_params
from kdbench.engine.precision import autocast_dtype
from kdbench.engine.seeding import seed_everything
from kdbench.engine.streaming import sample_inputs, training_stream
from kdbench.engine.training import fit, make_run
from kdbench.records.store import atomic_path, write_json_atomic


def teacher_paths(out_dir: Path, spec: TeacherSpec) -> tuple[Path, Path]:
    folder = out_dir / "teachers"
    return folder / f"{spec.id}.pt", folder / f"{spec.id}.json"


def provision(
    spec: TeacherSpec,
    context: RunContext,
    out_dir: Path,
    device: torch.device,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Make the teacher's weights available on disk and measure its accuracy."""
    data, fingerprint = context.dataset(spec.dataset)
    weights, meta_path = teacher_paths(out_dir, spec)
    if spec.source == "checkpoint":
        model = load_teacher(spec, context, data, Path(spec.checkpoint), device)
        sha256, cached, seconds = spec.checkpoint_sha256, False, 0.0
    elif weights.is_file():
        model = load_teacher(spec, context, data, weights, device)
        sha256, cached, seconds = file_sha256(weights), True, 0.0
    else:
        model, seconds = _train(spec, context, data, device, progress)
        # Through a file handle: torch.save names the archive after a path, and the
        # temporary name would make identical weights hash differently.
        with atomic_path(weights) as tmp, open(tmp, "wb") as handle:
            torch.save(model.state_dict(), handle)
        sha256, cached = file_sha256(weights), False
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    accuracy = evaluate(model, data.test, mean=mean, std=std, device=device)
    info = {
        "id": spec.id,
        "name": spec.model.name,
        "params": spec.model.params,
        "source": spec.source,
        "weights": str(spec.checkpoint if spec.source == "checkpoint" else weights),
        "sha256": sha256,
        "cached": cached,
        "train_seconds": seconds,
        "num_params": count_params(model),
        "dataset_fingerprint": fingerprint,
        **accuracy,
    }
    write_json_atomic(meta_path, {k: v for k, v in info.items() if k != "cached"})
    return info


def _train(
    spec: TeacherSpec,
    context: RunContext,
    data: DatasetSplits,
    device: torch.device,
    progress: Progress | None,
) -> tuple[nn.Module, float]:
    seed_everything(spec.seed)
    model = _build(spec, context, data, device)
    recipe = spec.recipe
    amp = autocast_dtype(recipe["amp"], device)
    run = make_run(model, CrossEntropy(), recipe, amp_dtype=amp)
    stream = training_stream(
        data.train,
        batch_size=recipe["batch_size"],
        augment=Augment(**recipe["augment"]),
        mean=torch.tensor(data.mean),
        std=torch.tensor(data.std),
        device=device,
        seed=spec.seed,
    )
    if progress:
        progress.cell_started(f"teacher {spec.model.name} on {spec.dataset.name}", recipe["epochs"])
    seconds = fit(stream, [run], epochs=recipe["epochs"], amp_dtype=amp, progress=progress)
    if run.error is not None:
        raise KdbenchError(
            f"training teacher '{spec.model.name}' failed: {run.error}; adjust [teacher_recipe]"
        ) from run.error
    if progress:
        progress.cell_done("ok")
    return model, seconds


def _build(
    spec: TeacherSpec, context: RunContext, data: DatasetSplits, device: torch.device
) -> nn.Module:
    model = context.build_model("teachers", spec.model, data).to(device)
    # A dry forward materialises lazily sized layers before weights are loaded or trained.
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    model.eval()
    with torch.no_grad():
        model(sample_inputs(data.train, 2, mean=mean, std=std, device=device))
    return model


def load_teacher(
    spec: TeacherSpec, context: RunContext, data: DatasetSplits, path: Path, device: torch.device
) -> nn.Module:
    """Build the teacher and load weights from ``path`` (a state_dict or a full checkpoint)."""
    state = read_state_dict(path)
    model = _build(spec, context, data, device)
    load_weights(model, state, path, spec.model.name)
    model.eval()
    return model
