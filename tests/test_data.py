"""Dataset registry contract: every dataset gives [0, 1] float images, deterministic disjoint splits."""
import gzip
import struct

import numpy as np
import pytest
import torch

from rcsweep.data import DATASETS, DEBIAN_FMNIST, dataset_info, load_dataset, read_idx
from rcsweep.errors import DataNotFoundError, UserError


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">i", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


@pytest.fixture
def fake_roots(tmp_path):
    """A data dir holding small, valid FashionMNIST (IDX) and CIFAR-10 (binary) files."""
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(0)
    _write_idx(raw / "train-images-idx3-ubyte.gz", rng.randint(0, 256, (100, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte.gz", rng.randint(0, 10, 100))
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", rng.randint(0, 256, (20, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", rng.randint(0, 10, 20))
    cb = tmp_path / "cifar-10-batches-bin"
    cb.mkdir()
    for name, n in (("data_batch_1.bin", 50), ("test_batch.bin", 10)):
        rec = np.concatenate([rng.randint(0, 10, (n, 1)), rng.randint(0, 256, (n, 3072))], 1).astype(np.uint8)
        rec.tofile(cb / name)
    return tmp_path


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_contract(name, fake_roots):
    info = dataset_info(name)
    kw = dict(data_dir=fake_roots, val_size=10)
    if name == "fashion_mnist" and DEBIAN_FMNIST.is_dir():
        pass  # the fake root is searched first, so the contract runs on the small files either way
    x, y = load_dataset(name, "train", **kw)
    xv, yv = load_dataset(name, "val", **kw)
    xt, yt = load_dataset(name, "test", **kw, test_size=5)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert tuple(x.shape[1:]) == info.shape and len(xt) == 5 and len(xv) == 10
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert 0 <= int(y.min()) and int(y.max()) < info.num_classes
    # deterministic, and val is disjoint from train
    x2, _ = load_dataset(name, "train", **kw)
    assert torch.equal(x, x2)
    train_rows = {r.numpy().tobytes() for r in x}
    assert not any(r.numpy().tobytes() in train_rows for r in xv)
    # train_size takes a prefix of the same order
    xs, _ = load_dataset(name, "train", **kw, train_size=7)
    assert torch.equal(xs, x[:7])


def test_digits_has_known_size():
    x, y = load_dataset("digits", "test")
    assert x.shape == (360, 1, 8, 8)
    n_train = len(load_dataset("digits", "train")[0]) + len(load_dataset("digits", "val")[0])
    assert n_train == 1797 - 360


def test_cifar_binary_layout_is_channel_planar(tmp_path):
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    rec = np.zeros((1, 3073), np.uint8)
    rec[0, 0] = 7
    rec[0, 1:1025] = 255  # red plane full
    rec.tofile(root / "data_batch_1.bin")
    rec.tofile(root / "test_batch_first1000.bin")
    x, y = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert int(y[0]) == 7 and x[0, 0].min() == 1.0 and x[0, 1].max() == 0.0


def test_truncated_idx_is_reported(tmp_path):
    p = tmp_path / "t.gz"
    with gzip.open(p, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">i", 10) + b"abc")
    with pytest.raises(DataNotFoundError, match="truncated"):
        read_idx(p)


def test_missing_data_names_dataset_and_paths(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise RuntimeError("no internet")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("cifar10", "test", data_dir=tmp_path / "nothing")
    msg = str(e.value)
    assert "cifar10" in msg and str(tmp_path / "nothing") in msg and "\n" not in msg


def test_bad_split_and_val_size():
    with pytest.raises(UserError, match="unknown split"):
        load_dataset("digits", "validation")
    with pytest.raises(UserError, match="val_size"):
        load_dataset("digits", "train", val_size=5000)


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_is_found_and_complete():
    x, y = load_dataset("fashion_mnist", "test", data_dir="/nonexistent")
    assert x.shape == (10000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [1000] * 10
