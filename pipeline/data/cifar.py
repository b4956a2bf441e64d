"""CIFAR-10 and CIFAR-100 from their official python-pickle layout.

Expected layout (the path may be the extracted directory or its parent):

- CIFAR-10: ``cifar-10-batches-py/`` holding ``data_batch_1`` .. ``data_batch_5``, ``test_batch``
  and ``batches.meta``;
- CIFAR-100: ``cifar-100-python/`` holding ``train``, ``test`` and ``meta`` (fine labels are used).

The official test batch is the test split; the validation share is held out of the training
batches. The pickles are read with a restricted unpickler that only admits numpy arrays, so a
foreign pickle cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.splits import Splits, build_splits
from pipeline.errors import DataError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_LAYOUT = f"{CIFAR10_DIR}/ with data_batch_1..data_batch_5, test_batch, batches.meta"
CIFAR100_LAYOUT = f"{CIFAR100_DIR}/ with train, test, meta"

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def _read_pickle(path: Path, layout: str) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            loaded = _ArrayOnlyUnpickler(handle, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"cannot read {path} ({type(exc).__name__}); expected {layout}") from None
    if not isinstance(loaded, dict):
        raise DataError(f"{path} does not hold a dict; expected {layout}")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in loaded.items()}


def _resolve(path: str | None, dirname: str, layout: str, required: tuple[str, ...]) -> Path:
    if path is None:
        raise DataError(f"data.path is required for this data set; expected a directory with {layout}")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"data path {root} does not exist; expected {layout}")
    candidates = [root / dirname, root] if root.name != dirname else [root]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in required):
            return candidate
    raise DataError(f"data path {root} is not in the expected layout: {layout}")


def _batch_arrays(batch: dict[str, Any], label_key: str, path: Path, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path} lacks 'data' or '{label_key}'; expected {layout}")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != data.shape[0]:
        raise DataError(f"{path} holds data of shape {data.shape}, expected N x 3072; expected {layout}")
    images = torch.from_numpy(np.ascontiguousarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
    return images, torch.as_tensor(np.asarray(labels), dtype=torch.int64)


def _names(meta: dict[str, Any], key: str) -> tuple[str, ...]:
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(key, []))


CIFAR10_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))


def cifar10_root(path: str | None) -> Path:
    """The CIFAR-10 directory under ``path`` once its files are all there (no file is read)."""
    return _resolve(path, CIFAR10_DIR, CIFAR10_LAYOUT, CIFAR10_BATCHES + ("test_batch", "batches.meta"))


def cifar100_root(path: str | None) -> Path:
    """The CIFAR-100 directory under ``path`` once its files are all there (no file is read)."""
    return _resolve(path, CIFAR100_DIR, CIFAR100_LAYOUT, ("train", "test", "meta"))


def load_cifar10_splits(path: str | None, val_fraction: float, seed: int) -> Splits:
    """CIFAR-10: 50,000 training images (minus the validation share) and the 10,000 test images."""
    batches = CIFAR10_BATCHES
    root = cifar10_root(path)
    parts = [_batch_arrays(_read_pickle(root / name, CIFAR10_LAYOUT), "labels", root / name, CIFAR10_LAYOUT)
             for name in batches]
    test_images, test_labels = _batch_arrays(
        _read_pickle(root / "test_batch", CIFAR10_LAYOUT), "labels", root / "test_batch", CIFAR10_LAYOUT
    )
    class_names = _names(_read_pickle(root / "batches.meta", CIFAR10_LAYOUT), "label_names")
    return build_splits(
        name="cifar10",
        train_images=torch.cat([images for images, _ in parts]),
        train_labels=torch.cat([labels for _, labels in parts]),
        test_images=test_images,
        test_labels=test_labels,
        num_classes=10,
        val_fraction=val_fraction,
        seed=seed,
        class_names=class_names,
    )


def load_cifar100_splits(path: str | None, val_fraction: float, seed: int) -> Splits:
    """CIFAR-100 with its 100 fine labels: 50,000 training and 10,000 test images."""
    root = cifar100_root(path)
    train_images, train_labels = _batch_arrays(
        _read_pickle(root / "train", CIFAR100_LAYOUT), "fine_labels", root / "train", CIFAR100_LAYOUT
    )
    test_images, test_labels = _batch_arrays(
        _read_pickle(root / "test", CIFAR100_LAYOUT), "fine_labels", root / "test", CIFAR100_LAYOUT
    )
    class_names = _names(_read_pickle(root / "meta", CIFAR100_LAYOUT), "fine_label_names")
    return build_splits(
        name="cifar100",
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=100,
        val_fraction=val_fraction,
        seed=seed,
        class_names=class_names,
    )
