"""Dataset registry and offline loaders.

Every dataset comes back as float32 images in [0, 1], shape (N, C, H, W), and int64 labels.
Splits are deterministic: ``val`` is carved from the training data with a fixed permutation
(independent of the trial seed), ``train`` is the rest (optionally the first ``train_size`` of it),
and ``test`` is the official test split (optionally its first ``test_size`` examples).

Real data is found offline where it already lies:
- ``digits``: scikit-learn's bundled 8x8 digits (no files needed).
- ``fashion_mnist``: IDX files (``*-ubyte`` or ``*-ubyte.gz``) in ``DATA_DIR/FashionMNIST/raw``
  (torchvision's layout), ``DATA_DIR/fashion-mnist`` or the Debian package's
  ``/usr/share/datasets/fashion-mnist``; otherwise torchvision downloads it into ``DATA_DIR``.
- ``cifar10``: the python version (``cifar-10-batches-py``, via torchvision) or the official binary
  version (``cifar-10-batches-bin``, read here since torchvision cannot); otherwise downloaded.
IDX and CIFAR binary parsing is written by hand because torchvision exposes no public reader.
"""
from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .errors import DataNotFoundError, UserError
from .registry import Registry

SPLITS = ("train", "val", "test")
_SPLIT_SEED = 20240501  # fixed: the same val/train examples for every trial and every seed


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    shape: tuple  # (C, H, W)
    num_classes: int
    mean: tuple  # per channel, for the normalisation inside the model
    std: tuple
    default_model: str
    loader: Callable[[Optional[Path]], tuple]  # data_dir -> (x_train, y_train, x_test, y_test) as uint8/float np


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def default_data_dir() -> Path:
    return Path(os.environ.get("RCSWEEP_DATA_DIR", Path.home() / ".cache" / "rcsweep" / "data"))


def dataset_info(name: str) -> DatasetInfo:
    info = DATASETS.get(name)
    if callable(info) and not isinstance(info, DatasetInfo):  # a user's 'pkg.mod:factory'
        info = info()
    if not isinstance(info, DatasetInfo):
        raise UserError(f"dataset {name!r} is not a rcsweep DatasetInfo")
    return info


def default_model(dataset: str) -> str:
    return dataset_info(dataset).default_model


def load_dataset(name: str, split: str, *, data_dir=None, train_size: Optional[int] = None,
                 val_size: Optional[int] = None, test_size: Optional[int] = None):
    """Return ``(images, labels)`` of one split: float32 in [0, 1] (N, C, H, W) and int64 (N,).

    ``val_size`` defaults to 10% of the training pool (at most 5000); ``train_size`` and
    ``test_size`` take the first examples of their split (for CPU budgets).
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    info = dataset_info(name)
    x_tr, y_tr, x_te, y_te = _load_arrays(name, str(Path(data_dir) if data_dir else default_data_dir()))
    if split == "test":
        x, y = x_te, y_te
        if test_size is not None:
            x, y = x[:test_size], y[:test_size]
    else:
        n = len(x_tr)
        n_val = val_size if val_size is not None else min(5000, n // 10)
        if n_val >= n:
            raise UserError(f"val_size {n_val} leaves no training data ({name} has {n} training images)")
        perm = np.random.RandomState(_SPLIT_SEED).permutation(n)
        idx = perm[:n_val] if split == "val" else perm[n_val:]
        if split == "train" and train_size is not None:
            idx = idx[:train_size]
        x, y = x_tr[idx], y_tr[idx]
    images = torch.from_numpy(np.array(x, dtype=np.float32))  # a copy: the cached arrays stay read-only
    if x.dtype == np.uint8:
        images = images / 255.0
    images = images.reshape(len(images), *info.shape)
    return images, torch.as_tensor(np.asarray(y), dtype=torch.int64)


@functools.lru_cache(maxsize=4)
def _load_arrays(name: str, data_dir: str):
    return dataset_info(name).loader(Path(data_dir))


# -- digits ----------------------------------------------------------------------------------
def _load_digits(data_dir: Path):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    perm = np.random.RandomState(0).permutation(len(x))
    x, y = x[perm], y[perm]
    n_test = 360  # ~20%: digits has no official test split
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


DATASETS.register("digits")(DatasetInfo("digits", (1, 8, 8), 10, (0.30,), (0.38,), "digits_cnn", _load_digits))


# -- FashionMNIST ----------------------------------------------------------------------------
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
_FMNIST_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
                 "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), as used by MNIST-style datasets."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataNotFoundError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataNotFoundError(f"{path} is truncated ({arr.size} of {int(np.prod(dims))} values)")
    return arr.reshape(tuple(int(d) for d in dims))


def _find_idx(folder: Path, stem: str) -> Optional[Path]:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.is_file():
            return p
    return None


def _load_fashion_mnist(data_dir: Path):
    candidates = [data_dir / "FashionMNIST" / "raw", data_dir / "fashion-mnist", data_dir, DEBIAN_FMNIST]
    for folder in candidates:
        paths = {k: _find_idx(folder, stem) for k, stem in _FMNIST_FILES.items()}
        if all(paths.values()):
            arrs = {k: read_idx(p) for k, p in paths.items()}
            return arrs["x_train"], arrs["y_train"].astype(np.int64), arrs["x_test"], arrs["y_test"].astype(np.int64)
    try:  # online: torchvision's own download
        from torchvision.datasets import FashionMNIST

        tr = FashionMNIST(str(data_dir), train=True, download=True)
        te = FashionMNIST(str(data_dir), train=False, download=True)
        return tr.data.numpy(), tr.targets.numpy(), te.data.numpy(), te.targets.numpy()
    except Exception:
        raise DataNotFoundError(
            "dataset 'fashion_mnist' not found in " + ", ".join(map(str, candidates)) +
            " and the download failed; install the Debian package 'dataset-fashion-mnist' "
            "or put the IDX files in DATA_DIR/FashionMNIST/raw (--data-dir)") from None


DATASETS.register("fashion_mnist")(DatasetInfo("fashion_mnist", (1, 28, 28), 10, (0.2860,), (0.3530,),
                                               "fmnist_net", _load_fashion_mnist))


# -- CIFAR-10 --------------------------------------------------------------------------------
def read_cifar_bin(path: Path):
    """Read one file of CIFAR-10's official binary version: per image 1 label byte + 3072 pixels."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 3073:
        raise DataNotFoundError(f"{path} is not a CIFAR-10 binary batch (size {raw.size} not a multiple of 3073)")
    raw = raw.reshape(-1, 3073)
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def _load_cifar10(data_dir: Path):
    bin_dirs = [data_dir / "cifar-10-batches-bin", data_dir]
    for folder in bin_dirs:
        train = sorted(folder.glob("data_batch_*.bin"))
        test = sorted(folder.glob("test_batch*.bin"))
        if train and test:
            xs, ys = zip(*(read_cifar_bin(p) for p in train))
            xt, yt = zip(*(read_cifar_bin(p) for p in test))
            return np.concatenate(xs), np.concatenate(ys), np.concatenate(xt), np.concatenate(yt)
    py_dir = data_dir / "cifar-10-batches-py"
    try:
        from torchvision.datasets import CIFAR10

        download = not py_dir.is_dir()
        tr = CIFAR10(str(data_dir), train=True, download=download)
        te = CIFAR10(str(data_dir), train=False, download=download)
        to_chw = lambda a: np.ascontiguousarray(a.transpose(0, 3, 1, 2))  # noqa: E731
        return to_chw(tr.data), np.array(tr.targets), to_chw(te.data), np.array(te.targets)
    except Exception:
        raise DataNotFoundError(
            "dataset 'cifar10' not found in " + ", ".join(map(str, bin_dirs + [py_dir])) +
            " and the download failed; put 'cifar-10-batches-bin' or 'cifar-10-batches-py' under "
            "DATA_DIR (--data-dir or RCSWEEP_DATA_DIR)") from None


DATASETS.register("cifar10")(DatasetInfo("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465),
                                         (0.2470, 0.2435, 0.2616), "resnet18", _load_cifar10))
