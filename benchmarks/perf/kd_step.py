"""KD training throughput: a RepDistiller-style loop against kdbench's loop, side by side.

Run with ``python benchmarks/perf/kd_step.py [--device cpu|cuda] [--batch N ...]``.
Each variant trains the same student with the same KD loss (T=4, alpha 0.9) from the
same teacher on the same data for the same number of steps, in this one process:

- reference: how RepDistiller / mdistiller train - a DataLoader with worker processes,
  CPU-side RandomCrop + flip + normalisation, fp32, a teacher forward every step;
- minimal: a hand-written loop over in-memory tensors (the floor for the harness);
- kdbench: kdbench's own loop (device-side augmentation, bf16 autocast on CUDA);
- kdbench+cache: the same with the exact teacher-logit cache (no teacher forward);
  its one-off cache build is reported separately.

CPU: Fashion-MNIST (Debian's package) with cnn(width 16) -> cnn(width 4).
CUDA: resnet32x4 -> resnet8x4 on CIFAR-shaped data (random uint8 images: the timing
does not depend on pixel values, and CIFAR itself may not be on the machine).
Prints a table and writes JSON beside it under results/perf/.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T

from kdbench.builtin.losses_basic import KD
from kdbench.context import RunContext
from kdbench.data import Augment, BatchStream, DatasetSplits, Split, normalize
from kdbench.logit_cache import CachedTeacher, build_logit_cache
from kdbench.matrix import DatasetSpec, ModelSpec
from kdbench.measure import device_name
from kdbench.training import OnlineTeacher, autocast_dtype, make_run, train_epoch

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


def setup(device: torch.device) -> tuple[DatasetSplits, str, str, dict, dict, int]:
    context = RunContext()
    if device.type == "cuda":
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 100, (50_000,), generator=g)
        split = Split(images, labels)
        data = DatasetSplits(split, split, tuple(map(str, range(100))),
                             (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))  # fmt: skip
        return data, "resnet32x4", "resnet8x4", {}, {}, 4
    data, _ = context.dataset(DatasetSpec("fashion_mnist", {"train_subset": 10_000}))
    return data, "cnn", "cnn", {"width": 16}, {"width": 4}, 2


def timed(fn, device: torch.device) -> float:
    """Wall time of ``fn()``, after one untimed call to warm up (workers, caches, kernels)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def kd_loss(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Hinton KD written out, as the reference scripts do (T=4, alpha=0.9)."""
    soft = F.kl_div(F.log_softmax(s / 4, 1), F.log_softmax(t / 4, 1), reduction="batchmean",
                    log_target=True)  # fmt: skip
    return 0.1 * F.cross_entropy(s, y) + 0.9 * 16 * soft


def reference_loop(student, teacher, data, *, batch, steps, padding, flip, workers, device):
    """DataLoader workers, per-image CPU transforms, fp32, teacher every step."""
    transform = T.Compose([
        T.RandomCrop(data.image_size, padding=padding),
        *([T.RandomHorizontalFlip()] if flip else []),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(data.mean, data.std),
    ])  # fmt: skip
    loader = DataLoader(_TensorImages(data.train, transform), batch_size=batch, shuffle=True,
                        num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)  # fmt: skip
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)

    def loop() -> None:
        for i, (x, y) in enumerate(loader):
            if i == steps:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.no_grad():
                t = teacher(x)
            loss = kd_loss(student(x), t, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return loop


def minimal_loop(student, teacher, data, *, batch, steps, augment, amp, device):
    """A hand-written loop doing kdbench's work (in-memory data, same augmentation)."""
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    images, labels = data.train.images.to(device), data.train.labels.to(device)
    mean, std = torch.tensor(data.mean).to(device), torch.tensor(data.std).to(device)
    generator = torch.Generator().manual_seed(0)
    cast = dict(device_type=device.type, dtype=amp, enabled=amp is not None)

    def loop() -> None:
        order = torch.randperm(len(images), generator=generator).to(device)
        for i in range(steps):
            idx = order[i * batch : (i + 1) * batch]
            x = normalize(augment.apply(images[idx], augment.draw(len(idx), generator)), mean, std)
            with torch.no_grad(), torch.autocast(**cast):
                t = teacher(x).float()
            with torch.autocast(**cast):
                s = student(x).float()
            loss = kd_loss(s, t, labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return loop


def kdbench_loop(student, source, split, *, batch, augment, amp, device, data):
    """kdbench's training loop over exactly ``steps * batch`` images."""
    run = make_run(student, KD(), RECIPE, amp_dtype=amp)
    stream = BatchStream(split, batch_size=batch, augment=augment, mean=torch.tensor(data.mean),
                         std=torch.tensor(data.std), device=device, seed=0)  # fmt: skip
    return lambda: train_epoch(stream, [run], epoch=0, epochs=1, teacher=source, amp_dtype=amp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    args = parser.parse_args()
    device = torch.device(args.device)
    data, t_name, s_name, t_params, s_params, padding = setup(device)
    context = RunContext()

    def build(kind: str, name: str, params: dict) -> torch.nn.Module:
        torch.manual_seed(0)
        return context.build_model(kind, ModelSpec(name, params), data).to(device)

    teacher = build("teachers", t_name, t_params).eval().requires_grad_(False)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    flip = data.in_channels == 3
    augment = Augment(crop_padding=padding, flip=flip)
    amp = autocast_dtype("auto", device)
    rows = []
    for batch in args.batch:
        steps = min(args.steps, len(data.train) // batch)
        n_images = steps * batch
        split = Split(data.train.images[:n_images], data.train.labels[:n_images])
        student = lambda: build("students", s_name, s_params)  # noqa: E731
        started = time.perf_counter()
        cache = build_logit_cache(teacher, split, augment, mean=mean, std=std, device=device,
                                  amp_dtype=amp)  # fmt: skip
        cache_build_s = time.perf_counter() - started
        loops = {
            "reference": reference_loop(student(), teacher, data, batch=batch, steps=steps,
                                        padding=padding, flip=flip, workers=args.workers,
                                        device=device),
            "minimal": minimal_loop(student(), teacher, data, batch=batch, steps=steps,
                                    augment=augment, amp=amp, device=device),
            "kdbench": kdbench_loop(student(), OnlineTeacher(teacher, None, amp), split,
                                    batch=batch, augment=augment, amp=amp, device=device,
                                    data=data),
            "kdbench+cache": kdbench_loop(student(), CachedTeacher(cache), split, batch=batch,
                                          augment=augment, amp=amp, device=device, data=data),
        }  # fmt: skip
        row = {"batch": batch, "steps": steps, "cache_build_s": cache_build_s}
        for name, loop in loops.items():
            row[f"{name}_img_s"] = n_images / timed(loop, device)
        rows.append(row)
    report(rows, args.out, device, t_name, t_params, s_name, s_params, amp)


def report(rows, out: Path, device, t_name, t_params, s_name, s_params, amp) -> None:
    print(f"{t_name}{t_params or ''} -> {s_name}{s_params or ''} on {device_name(device)}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, amp {amp}")  # fmt: skip
    print(f"{'batch':>6} {'reference':>10} {'minimal':>10} {'kdbench':>10} {'kdb+cache':>10} "
          f"{'kdb/ref':>8} {'kdb/min':>8} {'cache/ref':>9} {'cache build s':>13}")  # fmt: skip
    for r in rows:
        ref, low = r["reference_img_s"], r["minimal_img_s"]
        kdb, cached = r["kdbench_img_s"], r["kdbench+cache_img_s"]
        print(f"{r['batch']:>6} {ref:>10,.0f} {low:>10,.0f} {kdb:>10,.0f} {cached:>10,.0f} "
              f"{kdb / ref:>8.2f} {kdb / low:>8.2f} {cached / ref:>9.2f} "
              f"{r['cache_build_s']:>13.2f}")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"kd_step_{device.type}.json"
    path.write_text(json.dumps({
        "device": device_name(device), "machine": platform.node(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "teacher": t_name, "student": s_name, "rows": rows,
    }, indent=2) + "\n")  # fmt: skip
    print(f"written: {path}")


if __name__ == "__main__":
    main()
