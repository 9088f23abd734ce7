"""The Fashion-MNIST and CIFAR plugins against small files written in the real formats."""

from __future__ import annotations

import gzip
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from kdbench import DatasetNotFoundError, KdbenchError
from kdbench.builtin import _subsets, datasets_cifar, datasets_fashion_mnist
from kdbench.builtin.datasets_cifar import cifar10, cifar100
from kdbench.builtin.datasets_fashion_mnist import fashion_mnist, read_idx
from kdbench.core.errors import ConfigError
from kdbench.core.registry import Registry

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

# --- Fashion-MNIST fixtures -------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, magic: int, *, gz: bool = True) -> Path:
    """An idx file: big-endian magic, big-endian uint32 dims, then the uint8 bytes."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def fake_images(n: int, offset: int) -> np.ndarray:
    """n distinct 28x28 images with known, position-dependent pixel values."""
    pixels = np.arange(n * 28 * 28).reshape(n, 28, 28) * 7 + offset
    return (pixels % 256).astype(np.uint8)


TRAIN_LABELS = np.array([3, 0, 1, 3, 2, 9, 0, 1, 3, 2, 5, 4, 6, 7, 8, 0, 1, 2, 9, 3])
TEST_LABELS = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])


def write_fashion(folder: Path, *, gz: bool = True) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": (fake_images(len(TRAIN_LABELS), 0), 2051),
        "train-labels-idx1-ubyte": (TRAIN_LABELS, 2049),
        "t10k-images-idx3-ubyte": (fake_images(len(TEST_LABELS), 100), 2051),
        "t10k-labels-idx1-ubyte": (TEST_LABELS, 2049),
    }
    for name, (array, magic) in arrays.items():
        write_idx(folder / name, array, magic, gz=gz)
    return {name: array for name, (array, _) in arrays.items()}


@pytest.fixture
def fashion_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "fashion"
    return root, write_fashion(root)


# --- Fashion-MNIST ----------------------------------------------------------------------


def test_fashion_round_trips_pixels_and_labels(fashion_root):
    root, arrays = fashion_root
    data = fashion_mnist(root=str(root))
    assert data.train.images.shape == (20, 1, 28, 28)
    assert data.test.images.shape == (10, 1, 28, 28)
    assert data.train.images.dtype == torch.uint8
    assert data.train.labels.dtype == torch.int64
    assert np.array_equal(data.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(data.test.images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert data.train.labels.tolist() == TRAIN_LABELS.tolist()
    assert data.test.labels.tolist() == TEST_LABELS.tolist()
    # Row-major: pixel (y, x) of image n is the (n*784 + y*28 + x)-th byte.
    assert int(data.train.images[2, 0, 5, 7]) == ((2 * 784 + 5 * 28 + 7) * 7) % 256
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert data.num_classes == 10 and data.in_channels == 1


def test_fashion_mean_std_come_from_the_train_split(fashion_root):
    root, arrays = fashion_root
    pixels = arrays["train-images-idx3-ubyte"].astype(np.float64) / 255
    data = fashion_mnist(root=str(root), train_subset=10)
    assert data.mean == pytest.approx((pixels.mean(),), abs=1e-12)
    assert data.std == pytest.approx((pixels.std(),), abs=1e-12)


def test_fashion_reads_torchvision_layout_uncompressed(tmp_path):
    arrays = write_fashion(tmp_path / "FashionMNIST" / "raw", gz=False)
    data = fashion_mnist(root=str(tmp_path))
    assert np.array_equal(data.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert data.test.labels.tolist() == TEST_LABELS.tolist()


def test_fashion_missing_files_say_where_and_how(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mnist(root=str(root))
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "download = true" in message and "[datasets.fashion_mnist]" in message
    assert str(root) in message and str(root / "FashionMNIST" / "raw") in message
    assert "t10k-labels-idx1-ubyte" in message


def test_fashion_names_the_one_missing_file(fashion_root):
    root, _ = fashion_root
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]\)"):
        fashion_mnist(root=str(root))


def test_fashion_download_uses_torchvision_then_reads_raw(tmp_path, monkeypatch):
    calls = []

    class FakeFashionMNIST:
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            write_fashion(Path(root) / "FashionMNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    data = fashion_mnist(root=str(tmp_path), download=True)
    assert calls == [(str(tmp_path), True)]
    assert len(data.train) == 20
    fashion_mnist(root=str(tmp_path), download=True)  # present now: no second download
    assert len(calls) == 1


def test_fashion_failed_download_is_a_dataset_error(tmp_path, monkeypatch):
    class Offline:
        def __init__(self, root, train=True, download=False):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    with pytest.raises(DatasetNotFoundError, match="download into .* failed"):
        fashion_mnist(root=str(tmp_path), download=True)


def test_corrupt_magic_number_names_the_file(fashion_root):
    root, _ = fashion_root
    bad = write_idx(root / "train-images-idx3-ubyte", fake_images(20, 0), 2049)
    with pytest.raises(KdbenchError, match="magic number 2049, expected 2051") as info:
        fashion_mnist(root=str(root))
    assert str(bad) in str(info.value)


def test_truncated_idx_data_is_rejected(tmp_path):
    path = write_idx(tmp_path / "imgs", fake_images(3, 0), 2051, gz=False)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(KdbenchError, match=r"dimensions \(3, 28, 28\) \(2352 bytes\) but 2351"):
        read_idx(path, magic=2051)


def test_empty_idx_file_is_rejected(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(b"")
    with pytest.raises(KdbenchError, match="too short for an idx file"):
        read_idx(path, magic=2049)


def test_broken_gzip_is_rejected(tmp_path):
    path = write_idx(tmp_path / "imgs", fake_images(3, 0), 2051)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(KdbenchError, match="corrupt gzip file"):
        read_idx(path, magic=2051)


def test_label_count_must_match_image_count(fashion_root):
    root, _ = fashion_root
    write_idx(root / "t10k-labels-idx1-ubyte", TEST_LABELS[:9], 2049)
    with pytest.raises(KdbenchError, match="9 labels for 10 images"):
        fashion_mnist(root=str(root))


# --- subsets ----------------------------------------------------------------------------


def test_fashion_subset_is_stratified_first_per_class_and_deterministic(fashion_root):
    root, arrays = fashion_root
    labels = torch.tensor([c for c in range(10) for _ in range(5)] * 2)  # 100 images
    assert _subsets.stratified_indices(labels, 20).tolist() == [
        i for i in range(100) if i < 50 and i % 5 < 2
    ]
    first = fashion_mnist(root=str(root), test_subset=5)
    second = fashion_mnist(root=str(root), test_subset=5)
    assert torch.equal(first.test.images, second.test.images)
    assert torch.equal(first.test.labels, second.test.labels)
    # Ten classes of one image each, five images: largest remainders tie, lower classes win.
    assert sorted(first.test.labels.tolist()) == [0, 1, 2, 3, 4]
    kept = [i for i, label in enumerate(TEST_LABELS) if label < 5]
    assert np.array_equal(first.test.images[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"][kept])


def test_subset_keeps_class_proportions_and_file_order():
    shuffle = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)[shuffle]
    index = _subsets.stratified_indices(labels, 10)
    assert torch.bincount(labels[index]).tolist() == [6, 3, 1]
    assert index.tolist() == sorted(index.tolist())
    for c, k in enumerate([6, 3, 1]):
        assert (
            index[labels[index] == c].tolist() == torch.nonzero(labels == c).flatten()[:k].tolist()
        )


def test_subset_size_is_exact_with_uneven_classes():
    labels = torch.tensor([0] * 7 + [1] * 5 + [2] * 3)
    for k in range(1, 16):
        index = _subsets.stratified_indices(labels, k)
        assert len(index) == k
        assert len(set(index.tolist())) == k


def test_subset_rejects_bad_sizes(fashion_root):
    root, _ = fashion_root
    with pytest.raises(ConfigError, match="train_subset = 21 is larger than the split"):
        fashion_mnist(root=str(root), train_subset=21)
    with pytest.raises(ConfigError, match="test_subset must be a positive number"):
        fashion_mnist(root=str(root), test_subset=0)
    assert len(fashion_mnist(root=str(root), train_subset=20).train) == 20


# --- CIFAR fixtures ---------------------------------------------------------------------


def cifar_rows(n: int, offset: int) -> np.ndarray:
    """n rows of 3072 bytes: the red, green and blue planes get distinct known values."""
    rows = np.zeros((n, 3, 32, 32), dtype=np.int64)
    rows += np.arange(n).reshape(n, 1, 1, 1) * 11 + offset
    rows += np.array([0, 80, 160]).reshape(1, 3, 1, 1)  # channel
    rows += np.arange(32).reshape(1, 1, 32, 1) * 3 + np.arange(32).reshape(1, 1, 1, 32)
    return (rows % 256).astype(np.uint8).reshape(n, 3072)


def dump(path: Path, entry: dict, *, bytes_keys: bool = False) -> None:
    if bytes_keys:  # what pickle.dump of a Python 3 dict with b"..." keys looks like
        entry = {k.encode(): v for k, v in entry.items()}
    path.write_bytes(pickle.dumps(entry, protocol=2))


CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_cifar10(root: Path, *, bytes_keys: bool = False) -> tuple[np.ndarray, list[int]]:
    """Five 4-image train batches and a 3-image test batch, in torchvision's layout."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    all_rows, all_labels = [], []
    for i in range(1, 6):
        rows, labels = cifar_rows(4, 40 * i), [(4 * i + j) % 10 for j in range(4)]
        dump(folder / f"data_batch_{i}", {"data": rows, "labels": labels}, bytes_keys=bytes_keys)
        all_rows.append(rows)
        all_labels += labels
    dump(
        folder / "test_batch",
        {"data": cifar_rows(3, 7), "labels": [9, 0, 5]},
        bytes_keys=bytes_keys,
    )
    names = [n.encode() for n in CIFAR10_NAMES] if bytes_keys else CIFAR10_NAMES
    dump(folder / "batches.meta", {"label_names": names, "num_vis": 3072}, bytes_keys=bytes_keys)
    return np.concatenate(all_rows), all_labels


def write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train_fine = [99, 0, 42, 7, 0, 99]
    train = {"data": cifar_rows(6, 1), "fine_labels": train_fine, "coarse_labels": [1] * 6}
    dump(folder / "train", train)
    dump(
        folder / "test", {"data": cifar_rows(2, 2), "fine_labels": [5, 6], "coarse_labels": [0, 0]}
    )
    names = [f"class_{i:02d}" for i in range(100)]
    dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": names[:20]})


# --- CIFAR ------------------------------------------------------------------------------


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10_round_trips_pixels_labels_and_channel_order(tmp_path, bytes_keys):
    rows, labels = write_cifar10(tmp_path, bytes_keys=bytes_keys)
    data = cifar10(root=str(tmp_path))
    assert data.train.images.shape == (20, 3, 32, 32)
    assert data.test.images.shape == (3, 3, 32, 32)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.train.labels.tolist() == labels
    assert data.test.labels.tolist() == [9, 0, 5]
    assert np.array_equal(data.train.images.reshape(20, 3072).numpy(), rows)
    # Channel c, row y, column x of image n is byte c*1024 + y*32 + x of row n.
    n, y, x = 13, 4, 9
    for c in range(3):
        assert int(data.train.images[n, c, y, x]) == rows[n, c * 1024 + y * 32 + x]
    assert int(data.train.images[0, 1, 0, 0]) - int(data.train.images[0, 0, 0, 0]) == 80
    assert data.classes == tuple(CIFAR10_NAMES)
    assert data.mean == (0.4914, 0.4822, 0.4465)
    assert data.std == (0.2470, 0.2435, 0.2616)


def test_cifar100_uses_fine_labels_and_meta_names(tmp_path):
    write_cifar100(tmp_path)
    data = cifar100(root=str(tmp_path))
    assert data.num_classes == 100 and data.classes[42] == "class_42"
    assert data.train.labels.tolist() == [99, 0, 42, 7, 0, 99]
    assert np.array_equal(data.test.images.reshape(2, 3072).numpy(), cifar_rows(2, 2))
    assert data.mean == (0.5071, 0.4867, 0.4408)
    assert data.std == (0.2675, 0.2565, 0.2761)


def test_cifar_subset_is_stratified(tmp_path):
    write_cifar10(tmp_path)
    data = cifar10(root=str(tmp_path), train_subset=10, test_subset=3)
    assert torch.bincount(data.train.labels, minlength=10).tolist() == [1] * 10
    assert len(data.test) == 3


@pytest.mark.parametrize(
    ("factory", "folder"), [(cifar10, "cifar-10-batches-py"), (cifar100, "cifar-100-python")]
)
def test_cifar_missing_files_say_where_and_how(tmp_path, factory, folder):
    with pytest.raises(DatasetNotFoundError) as info:
        factory(root=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / folder) in message
    assert "download = true" in message
    assert f"copy torchvision's `{folder}` folder" in message


def test_cifar_names_missing_batches(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing \['data_batch_3'\]"):
        cifar10(root=str(tmp_path))


def test_cifar_download_uses_torchvision(tmp_path, monkeypatch):
    calls = []

    class FakeCIFAR100:
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            write_cifar100(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    data = cifar100(root=str(tmp_path), download=True)
    assert calls == [(str(tmp_path), True)]
    assert len(data.train) == 6


def test_corrupt_cifar_pickle_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(b"\x80\x02}q\x00garbage")
    with pytest.raises(KdbenchError, match="not a readable CIFAR pickle") as info:
        cifar10(root=str(tmp_path))
    assert str(bad) in str(info.value)


def test_cifar_rows_of_the_wrong_size_are_rejected(tmp_path):
    write_cifar10(tmp_path)
    dump(
        tmp_path / "cifar-10-batches-py" / "test_batch",
        {"data": np.zeros((2, 1024), dtype=np.uint8), "labels": [0, 1]},
    )
    with pytest.raises(KdbenchError, match="rows hold 1024 bytes, expected 3072"):
        cifar10(root=str(tmp_path))


# --- registration -----------------------------------------------------------------------


def test_plugins_register_documented_datasets():
    registry = Registry()
    datasets_fashion_mnist.register_datasets(register=registry.registrar("datasets", "fm"))
    datasets_cifar.register_datasets(register=registry.registrar("datasets", "cifar"))
    assert registry.names("datasets") == ["cifar10", "cifar100", "fashion_mnist"]
    for entry in registry.entries("datasets"):
        assert entry.description
        assert set(entry.params) == {"root", "download", "train_subset", "test_subset"}
    assert registry.get("datasets", "cifar10").params["root"] == "data/"
    assert registry.get("datasets", "fashion_mnist").params["root"] == str(DEBIAN_FASHION)


# --- the real Fashion-MNIST from Debian's dataset-fashion-mnist ------------------------


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_debian_fashion_mnist():
    start = time.perf_counter()
    data = fashion_mnist()
    elapsed = time.perf_counter() - start
    assert data.train.images.shape == (60000, 1, 28, 28)
    assert data.test.images.shape == (10000, 1, 28, 28)
    assert data.num_classes == 10
    assert torch.bincount(data.train.labels).tolist() == [6000] * 10
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    # The widely quoted normalisation constants.
    assert data.mean[0] == pytest.approx(0.2860, abs=5e-5)
    assert data.std[0] == pytest.approx(0.3530, abs=5e-5)
    assert elapsed < 10, f"loading took {elapsed:.1f}s"
    small = fashion_mnist(train_subset=10000)
    assert torch.bincount(small.train.labels).tolist() == [1000] * 10
    assert torch.equal(small.train.images[:1], data.train.images[:1])
