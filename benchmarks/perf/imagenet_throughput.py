"""ImageNet KD throughput: kdbench's streaming path against an mdistiller-style DDP loop.

    python benchmarks/perf/imagenet_throughput.py [--root DIR] [--device cpu|cuda]
        [--batch 16] [--steps 4] [--image-size 224] [--workers 2] [--world 1 2]

Images/s of a KD step, torchvision ResNet34 (teacher: eval, no gradient) -> ResNet18
(student), KD at T 1 with CE 0.5 + KD 0.5, SGD lr 0.2, momentum 0.9, weight decay 1e-4,
on the same image files, global batch, worker count and number of steps, for each world
size (1 process, and N ranks: gloo on the CPU, NCCL on GPUs):

- kdbench: the real streaming path and step - :class:`LoaderStream` (torchvision.io
  decoding and v2 RandomResizedCrop + flip in DataLoader workers, normalisation on the
  device, JPEGs decoded on the GPU when training on one), ``train_epoch`` with the
  teacher's BatchNorms folded as a cell folds them, and on N ranks the cell's
  :class:`World` (each rank reads only its slice of every global batch; gradients
  all-reduced before each optimizer step); bf16 autocast on a GPU, as ``amp = "auto"``.
- mdistiller: how mdistiller and most ImageNet KD code train - torchvision ``ImageFolder``
  with PIL transforms (RandomResizedCrop, flip, ToTensor, Normalize), ``DataLoader(
  shuffle=True, num_workers=W, pin_memory=True)`` (a ``DistributedSampler`` and batch/N
  per rank on N ranks), the student in ``DistributedDataParallel``, fp32.

Each variant runs in fresh processes: one untimed pass (worker start-up, allocator), then
``--repeats`` timed passes of ``--steps`` global batches; the median is reported. Workers
persist between passes on both sides (an ImageNet epoch amortises their start over 2,500
steps). Weights are random: speed does not depend on them, and none are downloaded.

Without ``--root`` the script writes a synthetic folder (``--classes`` x ``--per-class``
JPEGs of ImageNet's typical 500x375, landscape and portrait, smooth random content with
grain, about 78 kB a file against ImageNet's ~110 kB): ImageNet is not on every machine,
and decoding and cropping cost depends on the files' size, not on what they show. Writes
``results/perf/imagenet_throughput_<device>.csv`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from kd_step import RECIPE as CIFAR_RECIPE
from tabulate import tabulate

FIELDS = ["variant", "world", "device", "batch", "steps", "images", "image_size", "workers",
          "threads_per_rank", "img_s", "median_s", "passes_s"]  # fmt: skip
# mdistiller's ImageNet SGD (lr 0.2, momentum 0.9, weight decay 1e-4), one constant epoch
SGD = {**CIFAR_RECIPE["optimizer"], "lr": 0.2, "weight_decay": 1e-4}
RECIPE = {**CIFAR_RECIPE, "optimizer": SGD}


def write_folder(root: Path, classes: int, per_class: int, seed: int = 0) -> Path:
    """train/ and val/ image folders of synthetic ImageNet-sized JPEGs (see the docstring)."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for split, count in (("train", per_class), ("val", 1)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                width, height = (500, 375) if i % 4 else (375, 500)
                coarse = torch.rand(1, 3, height // 16, width // 16, generator=g)
                smooth = F.interpolate(coarse, size=(height, width), mode="bicubic")
                grain = 0.04 * torch.randn(1, 3, height, width, generator=g)
                pixels = ((smooth + grain).clamp(0, 1) * 255).round().to(torch.uint8)[0]
                Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(
                    folder / f"{i:05d}.JPEG", quality=90
                )
    return root


def chosen(root: Path, count: int) -> list[int]:
    """``count`` training files of the folder, drawn at random (every class, any size)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    _, index = find_classes(str(root / "train"))
    total = len(make_dataset(str(root / "train"), index, extensions=IMG_EXTENSIONS))
    if total < count:
        raise SystemExit(f"{root}/train has {total} images; --batch x --steps needs {count}")
    return torch.randperm(total, generator=torch.Generator().manual_seed(0))[:count].tolist()


def models(classes: int, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A frozen ResNet34 teacher and a ResNet18 student, seeded (the same on every rank)."""
    from torchvision.models import resnet18, resnet34

    torch.manual_seed(0)
    teacher = resnet34(num_classes=classes).to(device).eval().requires_grad_(False)
    return teacher, resnet18(num_classes=classes).to(device)


def kdbench_pass(args, rank: int, world: int, device: torch.device):
    """One pass of kdbench's streaming KD step on this rank (a callable)."""
    from kdbench.builtin.datasets_imagefolder import imagefolder
    from kdbench.builtin.losses_basic import KD
    from kdbench.core.image_files import ImageFiles
    from kdbench.engine.distributed import World
    from kdbench.engine.folding import fold_batchnorm
    from kdbench.engine.online_teacher import OnlineTeacher
    from kdbench.engine.precision import autocast_dtype
    from kdbench.engine.streaming import LoaderStream
    from kdbench.engine.training import make_run, train_epoch

    data = imagefolder(root=str(args.root), image_size=args.image_size,
                       resize=max(args.image_size, args.image_size * 8 // 7),
                       workers=args.workers)  # fmt: skip
    pick = chosen(args.root, args.batch * args.steps)
    train = data.train
    files = ImageFiles(train.root, tuple(train.files[i] for i in pick), train.labels[pick],
                       tuple(train.sizes[i] for i in pick), train.views)  # fmt: skip
    teacher, student = models(data.num_classes, device)
    fold_batchnorm(teacher)
    amp = autocast_dtype("auto", device)
    run = make_run(student, KD(temperature=1.0, alpha=0.5), RECIPE, amp_dtype=amp)
    stream = LoaderStream(files, batch_size=args.batch, mean=torch.tensor(data.mean),
                          std=torch.tensor(data.std), device=device, seed=0)  # fmt: skip
    if world > 1:
        here = World(rank, world, dist.get_backend(), device)
        here.prepare([run], want_sync_bn=True)
        stream = here.shard(stream)
    source = OnlineTeacher(teacher, None, amp)
    return lambda: train_epoch(stream, [run], epoch=0, epochs=1, teacher=source, amp_dtype=amp)


def mdistiller_pass(args, rank: int, world: int, device: torch.device):
    """One pass of an mdistiller-style ImageFolder + DataLoader + DDP KD step (a callable)."""
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, Subset
    from torch.utils.data.distributed import DistributedSampler
    from torchvision import datasets, transforms

    from kdbench.builtin.datasets_imagefolder import IMAGENET_MEAN, IMAGENET_STD

    transform = transforms.Compose([
        transforms.RandomResizedCrop(args.image_size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])  # fmt: skip
    folder = datasets.ImageFolder(str(args.root / "train"), transform)
    subset = Subset(folder, chosen(args.root, args.batch * args.steps))
    sampler = DistributedSampler(subset, shuffle=True, seed=0) if world > 1 else None
    loader = DataLoader(subset, batch_size=args.batch // world, shuffle=sampler is None,
                        sampler=sampler, num_workers=args.workers,
                        pin_memory=device.type == "cuda",  # mdistiller's True; no-op on a CPU
                        persistent_workers=args.workers > 0)  # fmt: skip
    teacher, student = models(len(folder.classes), device)
    if world > 1:
        cuda = device.type == "cuda"
        student = DistributedDataParallel(student, device_ids=[device.index] if cuda else None)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-4)
    epochs = iter(range(10**6))

    def one_pass() -> None:
        student.train()
        if sampler is not None:
            sampler.set_epoch(next(epochs))
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.no_grad():
                t = teacher(x)
            s = student(x)
            kd = F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="none").sum(1).mean()
            loss = 0.5 * F.cross_entropy(s, y) + 0.5 * kd  # T = 1: no T^2 factor
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return one_pass


PASSES = {"kdbench": kdbench_pass, "mdistiller": mdistiller_pass}


def rank_main(rank: int, variant: str, world: int, args, store: str, out: str) -> None:
    """One rank of a variant: join the group, warm up, time the passes, rank 0 writes them."""
    cuda = args.device == "cuda"
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(args.threads_per_rank)
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{store}",
                                rank=rank, world_size=world)  # fmt: skip
    try:
        one_pass = PASSES[variant](args, rank, world, device)
        seconds = []
        for i in range(1 + args.repeats):
            if world > 1:
                dist.barrier()
            started = time.perf_counter()
            one_pass()
            if cuda:
                torch.cuda.synchronize()
            if world > 1:
                dist.barrier()
            if i:  # the first pass warms up
                seconds.append(time.perf_counter() - started)
        if rank == 0:
            Path(out).write_text(" ".join(f"{s:.4f}" for s in seconds))
    finally:
        if world > 1:
            dist.destroy_process_group()


def measure(variant: str, world: int, args) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        out = f"{scratch}/seconds.txt"
        torch.multiprocessing.spawn(rank_main, args=(variant, world, args, f"{scratch}/store",
                                    out), nprocs=world, join=True)  # fmt: skip
        seconds = [float(s) for s in Path(out).read_text().split()]
    images = args.batch * args.steps
    median = statistics.median(seconds)
    return {"variant": variant, "world": world, "device": args.device, "batch": args.batch,
            "steps": args.steps, "images": images, "image_size": args.image_size,
            "workers": args.workers, "threads_per_rank": args.threads_per_rank,
            "img_s": round(images / median, 2), "median_s": round(median, 3),
            "passes_s": " ".join(f"{s:.3f}" for s in seconds)}  # fmt: skip


def report(rows: list[dict], args, load_before: tuple, load_after: tuple) -> None:
    table = tabulate(
        [[r["variant"], r["world"], f"{r['img_s']:,.1f}", r["median_s"], r["passes_s"]]
         for r in rows],
        headers=["variant", "ranks", "images/s", "median s", "passes s"], disable_numparse=True,
        tablefmt="github",
    )  # fmt: skip
    ratios = []
    for world in sorted({r["world"] for r in rows}):
        rate = {r["variant"]: r["img_s"] for r in rows if r["world"] == world}
        if len(rate) == 2:
            ratio = rate["kdbench"] / rate["mdistiller"]
            ratios.append(f"{world} rank(s): kdbench / mdistiller {ratio:.2f}")
    print(table)
    print("; ".join(ratios))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"imagenet_throughput_{args.device}{args.tag}"
    with open(f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    data = "synthetic (written by the script)" if args.synthetic else str(args.root)
    lines = [
        "# ImageNet KD throughput: ResNet34 -> ResNet18, kdbench streaming vs mdistiller-style DDP",
        "",
        f"`python benchmarks/perf/imagenet_throughput.py {' '.join(args.argv)}`",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, device {args.device}, "
        f"torch {torch.__version__}, {args.threads} torch thread(s) in all, split between "
        "the ranks (threads_per_rank in the CSV)",
        f"- load average (1, 5, 15 min) before: {load_before}, after: {load_after}",
        f"- data: {data}; {args.batch * args.steps} training images, global batch "
        f"{args.batch}, {args.steps} steps per pass, image size {args.image_size}, "
        f"{args.workers} DataLoader worker(s) per rank",
        f"- median of {args.repeats} timed passes after one untimed pass, each variant in fresh "
        "processes",
        "",
        table,
        "",
        "; ".join(ratios),
        "",
    ]
    Path(f"{stem}.md").write_text("\n".join(lines))
    print(f"written: {stem}.csv, {stem}.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="an ImageFolder root with train/ and val/")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=16, help="the global batch")
    parser.add_argument("--steps", type=int, default=4, help="global batches per timed pass")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    parser.add_argument("--world", type=int, nargs="+", default=[1, 2], help="ranks to time")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per variant")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads in all, split between the ranks")  # fmt: skip
    parser.add_argument("--classes", type=int, default=3, help="synthetic folder: classes")
    parser.add_argument("--per-class", type=int, help="synthetic folder: images per class "
                        "(default: just enough for --batch x --steps)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    parser.add_argument("--tag", default="", help="suffix of the output files' names")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    if args.device == "cuda" and max(args.world) > torch.cuda.device_count():
        raise SystemExit(f"--world {max(args.world)} needs as many GPUs; "
                         f"{torch.cuda.device_count()} visible")  # fmt: skip
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as scratch:
        args.synthetic = args.root is None
        if args.synthetic:
            per_class = args.per_class or -(-args.batch * args.steps // args.classes)
            args.root = write_folder(Path(scratch) / "images", args.classes, per_class)
        rows = []
        for world in args.world:
            args.threads_per_rank = max(1, args.threads // world)
            for variant in PASSES:
                rows.append(measure(variant, world, args))
                print(f"  {variant}, {world} rank(s): {rows[-1]['img_s']:,.1f} images/s",
                      flush=True)  # fmt: skip
    report(rows, args, load_before, tuple(round(x, 2) for x in os.getloadavg()))


if __name__ == "__main__":
    main()
