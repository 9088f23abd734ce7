"""What evaluating the test split after every epoch costs, against one training epoch.

Run with ``python benchmarks/perf/eval_cost.py [--device cpu|cuda] [--steps N]``.
resnet32x4 -> resnet8x4 on CIFAR-shaped data: random uint8 images (3x32x32, 100
classes), since only time is measured and CIFAR itself may not be on the machine.

- one evaluation: :func:`kdbench.engine.evaluate.evaluate` of the student, as a cell runs it
  after each epoch (each ``--eval-batch``), timed on ``--eval-images`` test images and
  scaled to 10,000;
- one training epoch: kdbench's KD loop (teacher forward every step, BatchNorms folded)
  timed over ``--steps`` steps of batch 64 and scaled to 50,000 images; the same for the
  student trained alone with cross-entropy (the ``ce`` baseline: no teacher, the case
  where evaluation weighs most).

``--eval-batch`` takes sizes and ``auto`` (what ``eval_batch_size = "auto"``, the
default, picks on this device); ``--channels-last`` adds each size evaluated with the
student in channels_last memory format (variants ``eval_cl_<size>``), the layout
alternative to a smaller batch.

The variants run interleaved, ``--repeats`` rounds after one warm-up round, and each
keeps its median, so a busy moment of a shared machine slows them alike.

Prints the ratios and writes JSON (with the machine and its load average) under
results/perf/.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import statistics
from pathlib import Path

import torch
from kd_step import kdbench_loop, setup, timed

from kdbench.builtin.losses_basic import CrossEntropy
from kdbench.core.data import Split
from kdbench.engine.batches import Augment
from kdbench.engine.context import RunContext
from kdbench.engine.evaluate import eval_batch_size, evaluate
from kdbench.engine.folding import fold_batchnorm
from kdbench.engine.matrix import ModelSpec
from kdbench.engine.measure import device_name
from kdbench.engine.online_teacher import OnlineTeacher
from kdbench.engine.precision import autocast_dtype

TRAIN_IMAGES, TEST_IMAGES, BATCH = 50_000, 10_000, 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=12, help="training steps per pass")
    parser.add_argument("--eval-images", type=int, default=1000, help="test images per pass")
    parser.add_argument(
        "--eval-batch",
        nargs="+",
        default=["auto", "512"],
        help="sizes, or auto (the default setting on this device)",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="also evaluate each size in channels_last memory format",
    )
    parser.add_argument("--repeats", type=int, default=4, help="timed passes (median kept)")
    parser.add_argument("--out", type=Path, default=Path("results/perf"))
    args = parser.parse_args()
    device = torch.device(args.device)
    data, t_name, s_name, t_params, s_params, padding = setup("cifar")
    context = RunContext()

    def build(kind: str, name: str, params: dict) -> torch.nn.Module:
        torch.manual_seed(0)
        return context.build_model(kind, ModelSpec(name, params), data).to(device)

    teacher = build("teachers", t_name, t_params).eval().requires_grad_(False)
    fold_batchnorm(teacher)
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    teacher = teacher.to(memory_format=layout)
    amp = autocast_dtype("auto", device)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    part_images = args.steps * BATCH
    part = Split(data.train.images[:part_images], data.train.labels[:part_images])
    test = Split(data.train.images[: args.eval_images], data.train.labels[: args.eval_images])
    common = dict(batch=BATCH, augment=Augment(crop_padding=padding, flip=True), amp=amp,
                  device=device, data=data, layout=layout)  # fmt: skip
    student = build("students", s_name, s_params).to(memory_format=layout)

    result = {
        "device": device_name(device),
        "machine": platform.node(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg(),
        "pair": f"{t_name} -> {s_name}",
        "data": "random uint8 CIFAR-shaped images (time only)",
        "steps_per_pass": args.steps,
        "eval_images_per_pass": args.eval_images,
        "repeats": args.repeats,
        "batch": BATCH,
    }
    loops = {
        "kd": kdbench_loop(student, OnlineTeacher(teacher, None, amp), part, **common),
        "ce": kdbench_loop(student, None, part, loss=CrossEntropy(), **common),
    }
    result["auto_eval_batch"] = eval_batch_size("auto", device)
    batches = dict.fromkeys(eval_batch_size(b, device) for b in args.eval_batch)
    layouts = {"eval": student}
    if args.channels_last:  # a copy, so the other variants keep the contiguous student
        layouts["eval_cl"] = copy.deepcopy(student).to(memory_format=torch.channels_last)
    for prefix, model in layouts.items():
        for batch in batches:
            loops[f"{prefix}_{batch}"] = functools.partial(
                evaluate, model, test, mean=mean, std=std, device=device, batch_size=batch,
                amp_dtype=amp,
            )  # fmt: skip
    seconds = timed(loops, device, args.repeats)
    scale = {"kd": TRAIN_IMAGES / part_images, "ce": TRAIN_IMAGES / part_images}
    epochs = {}
    for name, times in seconds.items():
        full = statistics.median(times) * scale.get(name, TEST_IMAGES / args.eval_images)
        result[f"{name}_pass_seconds"] = times
        result[f"{name}_full_seconds"] = full
        if name in scale:
            epochs[name] = full
            print(f"{name} epoch (50,000 images): {full:.1f} s", flush=True)
            continue
        shares = {f"vs_{v}_epoch": full / e for v, e in epochs.items()}
        result.update({f"{name}_{k}": v for k, v in shares.items()})
        layout = " channels_last" if name.startswith("eval_cl") else ""
        label = f"eval{layout} at batch {name.split('_')[-1]}"
        print(f"{label}: 10,000 images {full:.1f} s = "
              + ", ".join(f"{100 * v:.1f} % of a {k[3:5]} epoch" for k, v in shares.items()),
              flush=True)  # fmt: skip
    overhead(result, args.out / f"checkpoint_cost_{device.type}.json")
    result["load_average_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"eval_cost_{device.type}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"load average before {result['load_average_before']}, after "
          f"{result['load_average_after']}; wrote {path}")  # fmt: skip


def overhead(result: dict, checkpoints: Path) -> None:
    """Per-epoch evaluation at the default batch plus a per-epoch checkpoint (CIFAR's
    worst case, resnet8x4 with CRD's banks, from checkpoint_cost.py's file where there
    is one), as a share of a KD epoch: the budget is 3 %."""
    key = f"eval_{result['auto_eval_batch']}_full_seconds"
    if key not in result:
        return
    save = 0.0
    if checkpoints.is_file():
        saves = json.loads(checkpoints.read_text())["cifar_resnet8x4_crd_save"]["save_seconds"]
        save = statistics.median(saves) if isinstance(saves, list) else saves
    share = (result[key] + save) / result["kd_full_seconds"]
    result["checkpoint_save_seconds"] = save
    result["eval_and_checkpoint_vs_kd_epoch"] = share
    saved = f"checkpoint ({save:.2f} s)" if save else "checkpoint (no checkpoint_cost file: 0)"
    print(
        f"per-epoch overhead at the default (auto = {result['auto_eval_batch']}): "
        f"evaluation + {saved} = {100 * share:.2f} % of a kd epoch"
    )


if __name__ == "__main__":
    main()
