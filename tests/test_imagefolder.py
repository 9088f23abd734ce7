"""The streaming image-folder path: files written here, compared with torchvision's own."""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from kdbench import DatasetNotFoundError, StreamingDataset
from kdbench.builtin.datasets_imagefolder import IMAGENET_MEAN, IMAGENET_STD, imagefolder
from kdbench.cli import cli
from kdbench.core.image_files import ImageFileError
from kdbench.engine.streaming import NO_LOGIT_CACHE, LoaderStream, evaluation_batches, sample_inputs

CLASSES = ("ant", "bee", "cat")
SIZE = (48, 40)  # width x height of the written images


def gradient_image(width: int, height: int, tint: int) -> Image.Image:
    """Red rises left to right, green top to bottom: a crop's box can be read back."""
    x = torch.linspace(0, 255, width).view(1, width).expand(height, width)
    y = torch.linspace(0, 255, height).view(height, 1).expand(height, width)
    rgb = torch.stack([x, y, torch.full_like(x, tint)], dim=2).round().to(torch.uint8)
    return Image.fromarray(rgb.numpy())


def write_folder(root: Path, per_class: dict[str, int]) -> Path:
    for split, count in per_class.items():
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                # sizes vary so resizing and cropping are exercised
                image = gradient_image(SIZE[0] + 4 * i, SIZE[1] + 2 * c, tint=60 * c + 10 * i)
                image.save(folder / f"{i:03d}.JPEG", quality=95)
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "images", {"train": 4, "val": 2})


def small(root: Path, **params) -> StreamingDataset:
    return imagefolder(root=str(root), image_size=32, resize=36, workers=0, **params)


def norm() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)


def stream(data: StreamingDataset, seed: int = 0, batch_size: int = 5) -> LoaderStream:
    mean, std = norm()
    return LoaderStream(
        data.train, batch_size=batch_size, mean=mean, std=std, device=torch.device("cpu"),
        seed=seed,
    )  # fmt: skip


def test_labels_and_classes_match_torchvision_image_folder(folder: Path):
    from torchvision.datasets import ImageFolder

    data = small(folder)
    for split, name in ((data.train, "train"), (data.test, "val")):
        reference = ImageFolder(str(folder / name))
        assert data.classes == tuple(reference.classes) == CLASSES
        assert split.files == tuple(
            str(Path(p).relative_to(folder / name)) for p, _ in reference.samples
        )
        assert split.labels.tolist() == reference.targets
    seen = {}
    for batch in stream(data).epoch():
        assert batch.views is None
        for index, label in zip(batch.indices.tolist(), batch.labels.tolist(), strict=True):
            seen[index] = label
    assert seen == dict(enumerate(ImageFolder(str(folder / "train")).targets))


def test_val_views_equal_torchvision_resize_center_crop_normalize(folder: Path):
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    data = small(folder)
    reference = ImageFolder(
        str(folder / "val"),
        transform=transforms.Compose(
            [
                transforms.Resize(36),
                transforms.CenterCrop(32),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        ),
    )
    mean, std = norm()
    batches = list(
        evaluation_batches(data.test, batch_size=4, mean=mean, std=std, device=torch.device("cpu"))
    )
    inputs = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    expected = torch.stack([reference[i][0] for i in range(len(reference))])
    assert inputs.shape == expected.shape == (6, 3, 32, 32)
    assert labels.tolist() == reference.targets
    # PIL's and torchvision's decoders and resamplers differ by a few grey levels at most
    step = 1 / 255 / min(IMAGENET_STD)
    assert (inputs - expected).abs().mean() < 1.5 * step
    assert (inputs - expected).abs().max() < 12 * step
    first = sample_inputs(data.test, 2, mean=mean, std=std, device=torch.device("cpu"))
    assert torch.equal(first, inputs[:2])


def crop_boxes(data: StreamingDataset, epochs: int) -> tuple[list[float], list[float], list[bool]]:
    """Area share, aspect ratio and flip of each training view, read off the gradients."""
    mean, std = norm()
    areas, aspects, flips = [], [], []
    source = stream(data, batch_size=12)
    for _ in range(epochs):
        for batch in source.epoch():
            pixels = batch.inputs * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
            for image, index in zip(pixels, batch.indices.tolist(), strict=True):
                red, green = image[0], image[1]
                width, height = Image.open(data.train.path(index)).size
                span_x = (red[:, -1] - red[:, 0]).mean().item()  # signed: negative when flipped
                span_y = (green[-1, :] - green[0, :]).mean().item()
                w, h = abs(span_x) * (width - 1) + 1, span_y * (height - 1) + 1
                areas.append(w * h / (width * height))
                aspects.append(w / h)
                flips.append(span_x < 0)
    return areas, aspects, flips


def test_train_views_follow_random_resized_crop_and_flip(tmp_path: Path):
    data = small(write_folder(tmp_path / "big", {"train": 4, "val": 1}))
    areas, aspects, flips = crop_boxes(data, epochs=25)  # 300 views
    assert len(areas) == 300
    # RandomResizedCrop: area share in [0.08, 1], aspect in [3/4, 4/3] (slack for blur)
    assert min(areas) > 0.06 and max(areas) < 1.1
    assert min(aspects) > 0.7 and max(aspects) < 1.45
    assert 0.3 < sum(a < 0.5 for a in areas) / len(areas) < 0.8  # uniform share: ~0.46 < 0.5
    assert 0.4 < sum(flips) / len(flips) < 0.6


def batches_of(source: LoaderStream, epochs: int = 2) -> list[torch.Tensor]:
    return [torch.cat([b.inputs.flatten(), b.indices.float()]) for _ in range(epochs)
            for b in source.epoch()]  # fmt: skip


def test_same_seed_same_batches_whatever_the_workers(folder: Path):
    alone = batches_of(stream(small(folder)))
    again = batches_of(stream(small(folder)))
    data = imagefolder(root=str(folder), image_size=32, resize=36, workers=2)
    with_workers = batches_of(stream(data))
    other_seed = batches_of(stream(small(folder), seed=1))
    assert all(torch.equal(a, b) for a, b in zip(alone, again, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(alone, with_workers, strict=True))
    assert not torch.equal(alone[0], other_seed[0])
    assert not torch.equal(alone[0], alone[len(alone) // 2])  # epochs differ


def test_stream_resumes_at_an_epoch_boundary(folder: Path):
    whole = stream(small(folder))
    batches_of(whole, epochs=1)
    state = whole.state_dict()
    rest = batches_of(whole, epochs=1)
    resumed = stream(small(folder), seed=99)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(rest, batches_of(resumed, 1), strict=True))


def test_fingerprint_hashes_the_file_list_not_the_pixels(folder: Path):
    before = small(folder).fingerprint()
    assert small(folder).fingerprint() == before
    victim = folder / "train" / "bee" / "001.JPEG"
    victim.write_bytes(victim.read_bytes() + b"\0")  # one byte longer
    assert small(folder).fingerprint() != before
    assert imagefolder(root=str(folder), image_size=30, resize=36).fingerprint() != before


def test_missing_folder_is_one_line_saying_how_to_arrange_it(tmp_path: Path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetNotFoundError) as caught:
        imagefolder(root=str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message and "no val/ folder" in message and "ImageFolder layout" in message


TINY_STREAM = """
[benchmark]
name = "tiny-stream"
seeds = [0]

[datasets.imagefolder]
root = "{root}"
image_size = 32
resize = 36
workers = 0

[recipe]
epochs = 2
batch_size = 6
optimizer = {{ name = "sgd", lr = 0.05 }}
schedule = {{ name = "cosine" }}

[teacher_recipe]
epochs = 1
batch_size = 6
optimizer = {{ name = "sgd", lr = 0.05 }}

[[pairs]]
teacher = "cnn"
teacher_params = {{ width = 4 }}
student = "mlp"
student_params = {{ hidden = 8 }}

[losses.kd]
temperature = 4.0

[losses.dist]

[measure]
latency_iters = 2
warmup = 1
throughput_batch = 4
throughput_iters = 1
"""


def test_kd_cells_run_end_to_end_on_an_image_folder_sharing_teacher_forwards(
    folder: Path, tmp_path: Path, monkeypatch
):
    from kdbench.engine.online_teacher import OnlineTeacher

    forwards = []
    answer = OnlineTeacher.__call__
    monkeypatch.setattr(
        OnlineTeacher, "__call__", lambda self, b: forwards.append(1) or answer(self, b)
    )
    bench = tmp_path / "stream.toml"
    bench.write_text(TINY_STREAM.format(root=folder))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    records = {
        r["config"]["loss"]["label"]: r
        for r in (json.loads(p.read_text()) for p in (out / "records").glob("*.json"))
    }
    assert set(records) == {"ce", "kd", "dist"}  # the no-distillation baseline comes too
    for record in records.values():
        assert record["status"] == "ok"
        assert record["protocol"]["logit_cache"] is False
        assert record["protocol"]["logit_cache_note"] == NO_LOGIT_CACHE
        assert record["dataset"]["train"] == 12 and record["dataset"]["test"] == 6
        assert record["dataset"]["fingerprint"] == small(folder).fingerprint()
        assert len(record["history"]) == 2 and 0 <= record["metrics"]["top1"] <= 100
    assert records["kd"]["protocol"]["lockstep_group"] == 2  # kd and dist: one group
    assert len(forwards) == 2 * 2  # one teacher forward per batch (2 epochs of 2) for both


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_decoding_gives_the_cpu_views_up_to_decoder_differences(folder: Path):
    from kdbench.engine.streaming import gpu_decode_available

    mean, std = norm()
    on_gpu = LoaderStream(small(folder).train, batch_size=5, mean=mean, std=std,
                          device=torch.device("cuda"), seed=0)  # fmt: skip
    assert on_gpu.gpu_decode == gpu_decode_available()
    for cpu, gpu in zip(stream(small(folder)).epoch(), on_gpu.epoch(), strict=True):
        assert torch.equal(cpu.labels, gpu.labels.cpu())
        assert torch.equal(cpu.indices, gpu.indices.cpu())
        # the same crops and flips; nvjpeg and libjpeg differ by a few grey levels
        step = 1 / 255 / min(IMAGENET_STD)
        assert (cpu.inputs - gpu.inputs.cpu()).abs().mean() < 2 * step


def test_interrupted_streaming_group_resumes_to_identical_records(folder: Path, tmp_path: Path):
    """A kill after epoch 2 of 3: the rerun resumes at the epoch boundary, same weights."""
    from test_cell_resume import Interrupted, StopAfter, assert_same_training, with_outputs

    from conftest import cell_jobs
    from kdbench.engine.cell import run_group
    from kdbench.engine.lockstep import lockstep_groups

    bench = tmp_path / "stream.toml"
    text = TINY_STREAM.format(root=folder).replace("epochs = 2", "epochs = 3", 1)
    bench.write_text(text.replace("[losses.dist]", "[losses.crd]\nnegatives = 4\nfeature_dim = 8"))
    context, jobs = cell_jobs(bench, tmp_path)
    [group] = [g for g in lockstep_groups(jobs) if len(g) > 1]  # kd and crd
    straight = run_group(with_outputs(group, tmp_path / "straight"), context)
    out = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        run_group(with_outputs(group, out), context, StopAfter(2))
    resumed = run_group(with_outputs(group, out), context)
    assert_same_training(resumed, straight)
    assert all(r["cost"]["resumed_from_epoch"] == 2 for r in resumed)


def test_worker_count_does_not_change_a_cells_id_but_the_crop_size_does(folder: Path, tmp_path):
    from kdbench.engine.context import RunContext
    from kdbench.engine.runner import plan

    def ids(**changes) -> set[str]:
        text = TINY_STREAM.format(root=folder)
        for old, new in changes.items():
            text = text.replace(old, new)
        bench = tmp_path / f"{len(list(tmp_path.iterdir()))}.toml"
        bench.write_text(text)
        return {cell.id for cell in plan(bench, RunContext()).cells}

    same = ids()
    assert ids(**{"workers = 0": "workers = 2"}) == same
    assert not ids(**{"image_size = 32": "image_size = 28"}) & same


def test_testing_kit_checks_a_streaming_dataset_and_its_files(folder: Path):
    from dataclasses import replace

    from kdbench.testing import check_dataset

    data = check_dataset(imagefolder, {"root": str(folder), "workers": 0})
    assert isinstance(data, StreamingDataset) and data.num_classes == 3

    def renamed() -> StreamingDataset:
        return replace(data, test=replace(data.test, files=("ant/gone.JPEG", *data.test.files[1:])))

    with pytest.raises(AssertionError, match="test files do not exist: .*gone.JPEG"):
        check_dataset(renamed)


def test_validate_refuses_recipe_settings_a_streaming_dataset_cannot_honour(
    folder: Path, tmp_path: Path
):
    bench = tmp_path / "stream.toml"
    text = TINY_STREAM.format(root=folder).replace(
        "epochs = 2\n",
        'epochs = 2\naugment = { crop_padding = 4, flip = true }\nlogit_cache = "on"\n',
        1,
    )
    bench.write_text(text)
    result = CliRunner().invoke(cli, ["validate", str(bench)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if str(bench) in line]
    assert any("recipe.augment" in line and "cuts its own views" in line for line in lines)
    assert any("recipe.logit_cache" in line and "no logit cache" in line for line in lines)
    # the same file without them validates
    bench.write_text(TINY_STREAM.format(root=folder))
    assert CliRunner().invoke(cli, ["validate", str(bench)]).exit_code == 0


# --- what the folder walk leaves out, and files that cannot be trained on ----------------


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * width) * 4)  # four rows of the claimed width
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def walked(data: StreamingDataset) -> list[tuple[str, int]]:
    return list(zip(data.train.files, data.train.labels.tolist(), strict=True))


def test_links_are_followed_only_inside_the_root_and_into_no_folder_twice(
    folder: Path, tmp_path: Path
):
    from torchvision.datasets import ImageFolder

    plain = small(folder)
    outside = write_folder(tmp_path / "elsewhere", {"train": 2})
    train = folder / "train"
    (train / "ant" / "loop").symlink_to("..")  # the split again, under ant
    assert len(ImageFolder(str(train))) > 100  # torchvision walks the loop until ELOOP
    (train / "bee" / "up").symlink_to("../..")  # the whole root
    (train / "bee" / "out").symlink_to(outside / "train" / "bee")  # out of the root
    (train / "cat" / "again").symlink_to(train / "ant")  # a class folder walked anyway
    (train / "cat" / "far.JPEG").symlink_to(outside / "train" / "cat" / "000.JPEG")
    (train / "zebra").symlink_to(outside / "train" / "ant")  # a class from outside
    (train / "alias").symlink_to("ant")  # a second name for a class

    data = small(folder)
    assert data.classes == CLASSES
    assert walked(data) == walked(plain) and len(data.train) == 12
    assert data.fingerprint() == plain.fingerprint()

    # links inside the root to folders and files that are not walked otherwise are followed
    pool = folder / "pool"
    (pool / "bee").mkdir(parents=True)
    gradient_image(40, 40, 7).save(pool / "bee" / "extra.JPEG")
    gradient_image(40, 40, 9).save(pool / "single.JPEG")
    (train / "bee" / "more").symlink_to(pool / "bee")
    (train / "ant" / "one.JPEG").symlink_to(pool / "single.JPEG")
    grown = dict(walked(small(folder)))
    assert len(grown) == 14
    assert grown["bee/more/extra.JPEG"] == 1 and grown["ant/one.JPEG"] == 0


def test_hidden_folders_and_files_are_neither_classes_nor_samples(folder: Path):
    from torchvision.datasets import ImageFolder

    plain = small(folder)
    hidden = folder / "train" / ".cache"
    hidden.mkdir()
    gradient_image(40, 40, 1).save(hidden / "thumb.JPEG")
    (folder / "train" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "train" / "ant" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "train" / "ant" / "._000.JPEG").write_bytes(b"\0\5\26\7 AppleDouble")
    (folder / "val" / "bee" / ".hidden").mkdir()
    gradient_image(40, 40, 2).save(folder / "val" / "bee" / ".hidden" / "x.JPEG")
    assert ".cache" in ImageFolder(str(folder / "train")).classes  # torchvision's has it

    data = small(folder)
    assert data.classes == CLASSES
    assert walked(data) == walked(plain)
    assert data.test.files == plain.test.files


def broken_files(folder: Path) -> dict[str, str]:
    """Files no decoder can train on, written into ``folder``: name -> expected reason."""
    (folder / "train" / "ant" / "zero.JPEG").write_bytes(b"")
    whole = (folder / "train" / "bee" / "000.JPEG").read_bytes()
    (folder / "train" / "bee" / "cut.JPEG").write_bytes(whole[: len(whole) * 3 // 4])
    (folder / "train" / "cat" / "notes.jpg").write_text("not an image, only a name\n")
    (folder / "val" / "ant" / "huge.png").write_bytes(png_claiming(30000, 30000))
    return {
        "train/ant/zero.JPEG": "empty file (0 bytes)",
        "train/bee/cut.JPEG": "cannot be decoded: Image is incomplete or truncated",
        "train/cat/notes.jpg": "not an image",
        "val/ant/huge.png": "30000x30000 PNG is 900,000,000 pixels",
    }


def test_validate_names_each_file_that_cannot_be_trained_on_in_one_line(
    folder: Path, tmp_path: Path
):
    from kdbench.core.image_header import read_header

    expected = broken_files(folder)
    assert read_header((folder / "train/bee/cut.JPEG").read_bytes()).format == "JPEG"
    bench = tmp_path / "stream.toml"
    bench.write_text(TINY_STREAM.format(root=folder))
    start = time.monotonic()
    result = CliRunner().invoke(cli, ["validate", str(bench)])
    elapsed = time.monotonic() - start
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "kdbench: error:" in line]
    assert len(errors) == 1, result.output  # one line naming every file
    assert "datasets.imagefolder" in errors[0] and "4 of 22 files" in errors[0]
    for name, reason in expected.items():
        assert f"{name}: {reason}" in errors[0], errors[0]
    print(f"validate found the broken files in {elapsed:.1f} s")
    assert elapsed < 60  # the bomb's header is read, its 2.7 GB of pixels never are


def test_a_pixel_limit_below_the_images_refuses_them_by_name(folder: Path):
    with pytest.raises(ImageFileError) as caught:
        small(folder, max_pixels=48 * 40 - 1)
    message = str(caught.value)
    assert "\n" not in message and "18 of 18 files" in message
    assert "train/ant/000.JPEG: 48x40 JPEG is 1,920 pixels, over the limit of 1,919" in message
    assert len(small(folder, max_pixels=64 * 44).train) == 12  # the largest image fits


def test_headers_give_the_size_of_each_decodable_format(tmp_path: Path):
    from PIL import features

    from kdbench.core.image_header import read_header

    image = gradient_image(37, 23, 5)
    formats = ["JPEG", "PNG", "GIF"] + (["WEBP"] if features.check("webp") else [])
    for name in formats:
        path = tmp_path / f"x.{name.lower()}"
        image.save(path, format=name)
        header = read_header(path.read_bytes())
        assert (header.format, header.width, header.height) == (name, 37, 23)
    image.save(tmp_path / "x.bmp")
    with pytest.raises(ValueError, match="a BMP image, which torchvision.io cannot decode"):
        read_header((tmp_path / "x.bmp").read_bytes())


@pytest.mark.parametrize("workers", [0, 2])
def test_a_file_broken_after_the_check_fails_the_stream_with_one_line_naming_it(
    folder: Path, workers: int
):
    data = imagefolder(root=str(folder), image_size=32, resize=36, workers=workers)
    (folder / "train" / "bee" / "002.JPEG").write_text("overwritten while training\n")
    (folder / "val" / "cat" / "001.JPEG").write_bytes(png_claiming(30000, 30000))
    with pytest.raises(ImageFileError) as caught:
        batches_of(stream(data), epochs=1)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(str(folder / "train" / "bee" / "002.JPEG") + ": not an image")
    mean, std = norm()
    with pytest.raises(ImageFileError, match=r"001.JPEG: 30000x30000 PNG .* not decoded"):
        list(evaluation_batches(data.test, batch_size=4, mean=mean, std=std,
                                device=torch.device("cpu")))  # fmt: skip


def test_a_file_that_breaks_after_the_check_stops_a_run_in_one_line_naming_it(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import kdbench.builtin.datasets_imagefolder as plugin

    (folder / "train" / "cat" / "003.JPEG").write_bytes(b"")
    monkeypatch.setattr(plugin, "find_problems", lambda *args, **kwargs: [])  # as if changed later
    text = TINY_STREAM.format(root=folder).replace("workers = 0", "workers = 2")
    expected = "cat/003.JPEG: empty file (0 bytes); remove or replace the file"

    # the teacher trains first: its failure stops the run, in one line
    bench = tmp_path / "stream.toml"
    bench.write_text(text)
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(tmp_path / "a"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "DataLoader worker" not in result.output
    errors = [line for line in result.output.splitlines() if "kdbench: error:" in line]
    assert len(errors) == 1 and errors[0].endswith(expected), result.output

    # a cell without a teacher fails alone, its record holding the one line
    bench.write_text(text.split("[losses.kd]")[0])
    out = tmp_path / "b"
    result = CliRunner().invoke(cli, ["run", str(bench), "--out", str(out), "--quiet"])
    assert "Traceback" not in result.output and "DataLoader worker" not in result.output
    [record] = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert record["status"] == "failed" and record["error"]["type"] == "ImageFileError"
    assert "\n" not in record["error"]["message"]
    assert record["error"]["message"].endswith(expected)
