"""KD training throughput: a RepDistiller-style loop against kdbench's loop, side by side.

Run with ``python benchmarks/perf/kd_step.py [--device cpu|cuda] [--batch N ...]``.
Each variant trains the same student with the same KD loss (T=4, alpha 0.9) from the
same teacher on the same data for the same number of steps, in this one process:

- reference: how RepDistiller / mdistiller train - a DataLoader with worker processes,
  CPU-side RandomCrop + flip + normalisation, fp32, a teacher forward every step;
- minimal: a hand-written loop over in-memory tensors (the floor for the harness);
- kdbench: kdbench's own loop as a cell runs it (device-side augmentation, teacher
  BatchNorms folded; on CUDA bf16 autocast and channels-last);
- kdbench+cache: the same with the exact teacher-logit cache (no teacher forward);
  its one-off cache build is reported separately;
- kdbench+graphs (with ``--compile``): kdbench with ``compile = "reduce-overhead"``
  (torch.compile and, on CUDA, CUDA graphs) for teacher and student; compilation is
  part of the untimed warm-up pass.

``--pair fashion``: Fashion-MNIST (Debian's package) with cnn(width 16) -> cnn(width 4),
the CPU default. ``--pair cifar``: resnet32x4 -> resnet8x4 on CIFAR-shaped data (random
uint8 images: the timing does not depend on pixel values, and CIFAR itself may not be on
the machine), the CUDA default. Every batch size trains on the same ``--images`` images.
Prints a table and writes JSON beside it under results/perf/.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T

from kdbench.builtin.losses_basic import KD
from kdbench.core.data import DatasetSplits, Split
from kdbench.engine.batches import Augment, BatchStream, normalize
from kdbench.engine.context import RunContext
from kdbench.engine.folding import fold_batchnorm
from kdbench.engine.logit_cache import CachedTeacher, build_logit_cache
from kdbench.engine.matrix import DatasetSpec, ModelSpec
from kdbench.engine.measure import device_name
from kdbench.engine.online_teacher import OnlineTeacher
from kdbench.engine.precision import autocast_dtype, compiled
from kdbench.engine.training import make_run, train_epoch

RECIPE = {
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                  "nesterov": False},
    "schedule": {"name": "constant"},
    "epochs": 1,
}  # fmt: skip


class _TensorImages(Dataset):
    """uint8 tensors served one image at a time, transformed on the CPU (the old way)."""

    def __init__(self, split: Split, transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return self.transform(self.split.images[i]), int(self.split.labels[i])


def setup(pair: str) -> tuple[DatasetSplits, str, str, dict, dict, int]:
    context = RunContext()
    if pair == "cifar":
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 100, (50_000,), generator=g)
        split = Split(images, labels)
        data = DatasetSplits(split, split, tuple(map(str, range(100))),
                             (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))  # fmt: skip
        return data, "resnet32x4", "resnet8x4", {}, {}, 4
    data, _ = context.dataset(DatasetSpec("fashion_mnist", {"train_subset": 10_000}))
    return data, "cnn", "cnn", {"width": 16}, {"width": 4}, 2


def timed(loops: dict, device: torch.device, repeats: int) -> dict[str, list[float]]:
    """Wall times of each loop's pass, ``repeats`` rounds with the variants interleaved
    (so a slow moment of a shared machine hits them alike), after one untimed warm-up
    pass each (workers, caches, kernels, compilation)."""

    def once(fn) -> float:
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    for fn in loops.values():
        once(fn)
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, fn in loops.items():
            seconds[name].append(once(fn))
    return seconds


def kd_loss(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Hinton KD written out, as the reference scripts do (T=4, alpha=0.9)."""
    soft = F.kl_div(F.log_softmax(s / 4, 1), F.log_softmax(t / 4, 1), reduction="batchmean",
                    log_target=True)  # fmt: skip
    return 0.1 * F.cross_entropy(s, y) + 0.9 * 16 * soft


def reference_loader(data, *, batch, padding, flip, workers, drop_last=False, generator=None):
    """Per-image torchvision transforms in DataLoader worker processes, as the scripts do."""
    transform = T.Compose([
        T.RandomCrop(data.image_size, padding=padding),
        *([T.RandomHorizontalFlip()] if flip else []),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(data.mean, data.std),
    ])  # fmt: skip
    return DataLoader(_TensorImages(data.train, transform), batch_size=batch, shuffle=True,
                      num_workers=workers, drop_last=drop_last, persistent_workers=workers > 0,
                      generator=generator)  # fmt: skip


def reference_step(student, teacher, optimizer, x, y) -> None:
    """One fp32 KD step with the teacher run on the batch."""
    with torch.no_grad():
        t = teacher(x)
    loss = kd_loss(student(x), t, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def reference_loop(student, teacher, data, *, batch, steps, padding, flip, workers, device):
    """DataLoader workers, per-image CPU transforms, fp32, teacher every step."""
    loader = reference_loader(data, batch=batch, padding=padding, flip=flip, workers=workers,
                              drop_last=True)  # fmt: skip
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)

    def loop() -> None:
        for i, (x, y) in enumerate(loader):
            if i == steps:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            reference_step(student, teacher, optimizer, x, y)

    return loop


def minimal_loop(student, teacher, split, *, data, batch, steps, augment, amp, device, layout):
    """A hand-written loop doing kdbench's work (in-memory data, same augmentation)."""
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    images, labels = split.images.to(device), split.labels.to(device)
    mean, std = torch.tensor(data.mean).to(device), torch.tensor(data.std).to(device)
    generator = torch.Generator().manual_seed(0)
    cast = dict(device_type=device.type, dtype=amp, enabled=amp is not None)

    def loop() -> None:
        order = torch.randperm(len(images), generator=generator).to(device)
        for i in range(steps):
            idx = order[i * batch : (i + 1) * batch]
            x = normalize(augment.apply(images[idx], augment.draw(len(idx), generator)), mean, std)
            x = x.contiguous(memory_format=layout)
            with torch.no_grad(), torch.autocast(**cast):
                t = teacher(x).float()
            with torch.autocast(**cast):
                s = student(x).float()
            loss = kd_loss(s, t, labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return loop


def kdbench_loop(student, source, split, *, batch, augment, amp, device, data, layout,
                 compile_mode=None, loss=None):  # fmt: skip
    """kdbench's training loop over exactly ``steps * batch`` images (KD unless ``loss``)."""
    run = make_run(student, loss or KD(), RECIPE, amp_dtype=amp)
    if compile_mode:
        run.forward = compiled(student, compile_mode)
    stream = BatchStream(split, batch_size=batch, augment=augment, mean=torch.tensor(data.mean),
                         std=torch.tensor(data.std), device=device, seed=0,
                         channels_last=layout == torch.channels_last)  # fmt: skip
    return lambda: train_epoch(stream, [run], epoch=0, epochs=1, teacher=source, amp_dtype=amp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--pair",
        choices=("cifar", "fashion"),
        help="model pair and data (default: cifar on CUDA, fashion on CPU)",
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument(
        "--images",
        type=int,
        default=6400,
        help="training images per variant and batch size (one pass)",
    )
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    parser.add_argument(
        "--compile", action="store_true", help='also time kdbench with compile = "reduce-overhead"'
    )
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed passes per variant (the median is reported)"
    )
    parser.add_argument("--tag", default="", help="suffix of the JSON file's name")
    args = parser.parse_args()  # fmt: skip
    device = torch.device(args.device)
    pair = args.pair or ("cifar" if device.type == "cuda" else "fashion")
    data, t_name, s_name, t_params, s_params, padding = setup(pair)
    context = RunContext()

    def build(kind: str, name: str, params: dict) -> torch.nn.Module:
        torch.manual_seed(0)
        return context.build_model(kind, ModelSpec(name, params), data).to(device)

    # The reference keeps the teacher as trained; kdbench folds its BatchNorms and, on
    # CUDA, runs both networks channels-last, as a cell does with the GPU recipe.
    teacher = build("teachers", t_name, t_params).eval().requires_grad_(False)
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    fast_teacher = copy.deepcopy(teacher)
    folded = fold_batchnorm(fast_teacher)
    fast_teacher = fast_teacher.to(memory_format=layout)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    flip = data.in_channels == 3
    augment = Augment(crop_padding=padding, flip=flip)
    amp = autocast_dtype("auto", device)
    images = min(args.images, len(data.train))
    split = Split(data.train.images[:images], data.train.labels[:images])
    started = time.perf_counter()
    cache = build_logit_cache(fast_teacher, split, augment, mean=mean, std=std, device=device,
                              amp_dtype=amp)  # fmt: skip
    cache_build_s = time.perf_counter() - started

    def student() -> torch.nn.Module:
        return build("students", s_name, s_params).to(memory_format=layout)

    rows = []
    for batch in args.batch:
        steps = images // batch
        n_images = steps * batch
        part = Split(split.images[:n_images], split.labels[:n_images])
        common = dict(batch=batch, augment=augment, amp=amp, device=device, data=data,
                      layout=layout)  # fmt: skip
        loops = {
            "reference": reference_loop(build("students", s_name, s_params), teacher,
                                        replace(data, train=part),
                                        batch=batch, steps=steps, padding=padding, flip=flip,
                                        workers=args.workers, device=device),
            "minimal": minimal_loop(student(), fast_teacher, part, steps=steps, **common),
            "kdbench": kdbench_loop(student(), OnlineTeacher(fast_teacher, None, amp), part,
                                    **common),
            "kdbench+cache": kdbench_loop(student(), CachedTeacher(cache[:n_images]), part,
                                          **common),
        }  # fmt: skip
        if args.compile:
            graphed = OnlineTeacher(
                fast_teacher, None, amp, forward=compiled(fast_teacher, "reduce-overhead")
            )
            loops["kdbench+graphs"] = kdbench_loop(
                student(), graphed, part, compile_mode="reduce-overhead", **common
            )
        row = {"batch": batch, "steps": steps, "images": n_images,
               "cache_images": images, "cache_build_s": cache_build_s,
               "teacher_bn_folded": folded}  # fmt: skip
        for name, seconds in timed(loops, device, args.repeats).items():
            row[f"{name}_img_s"] = n_images / statistics.median(seconds)
            row[f"{name}_seconds"] = seconds
            print(f"  batch {batch}: {name} {row[f'{name}_img_s']:,.0f} img/s", flush=True)
        rows.append(row)
    report(
        rows,
        args.out / f"kd_step_{device.type}{args.tag}.json",
        device,
        t_name,
        t_params,
        s_name,
        s_params,
        amp,
    )


def projected_minutes(row: dict, epochs: int = 240, images: int = 50_000) -> dict[str, float]:
    """Minutes a full CIFAR-100 KD cell would take at each variant's measured rate.

    The cached variant also pays its one-off cache build, scaled to the whole split.
    """
    minutes = {}
    for key, rate in row.items():
        if key.endswith("_img_s"):
            variant = key.removesuffix("_img_s")
            seconds = epochs * images / rate
            if variant == "kdbench+cache":
                seconds += row["cache_build_s"] * images / row["cache_images"]
            minutes[variant] = seconds / 60
    return minutes


def report(rows, path: Path, device, t_name, t_params, s_name, s_params, amp) -> None:
    print(f"{t_name}{t_params or ''} -> {s_name}{s_params or ''} on {device_name(device)}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, amp {amp}, "
          f"teacher BatchNorms folded for kdbench: {rows[0]['teacher_bn_folded']}")  # fmt: skip
    variants = [k.removesuffix("_img_s") for k in rows[0] if k.endswith("_img_s")]
    print("images/s (and x the reference loop):")
    print(tabulate(
        [[r["batch"], *(f"{r[f'{v}_img_s']:,.0f} ({r[f'{v}_img_s'] / r['reference_img_s']:.2f}x)"
                        for v in variants)] for r in rows],
        headers=["batch", *variants], disable_numparse=True,
    ))  # fmt: skip
    for r in rows:
        r["kdbench_vs_minimal"] = r["kdbench_img_s"] / r["minimal_img_s"]
        r["projected_240_epoch_cifar100_minutes"] = projected_minutes(r)
    print("kdbench / minimal loop: " + ", ".join(
        f"batch {r['batch']} {r['kdbench_vs_minimal']:.2f}" for r in rows))  # fmt: skip
    print(f"logit cache build: {rows[0]['cache_build_s']:.1f} s for {rows[0]['cache_images']:,} "
          "images x every view")  # fmt: skip
    print("projected 240 epochs x 50,000 images (a CIFAR-100 cell's length) of this pair, minutes:")
    print(tabulate(
        [[r["batch"], *(f"{r['projected_240_epoch_cifar100_minutes'][v]:.1f}" for v in variants)]
         for r in rows],
        headers=["batch", *variants], disable_numparse=True,
    ))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "device": device_name(device), "machine": platform.node(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "teacher": t_name, "student": s_name,
        "amp": str(amp), "rows": rows,
    }, indent=2) + "\n")  # fmt: skip
    print(f"written: {path}")


if __name__ == "__main__":
    main()
