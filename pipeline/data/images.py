"""Image-file data sets read with Pillow: Tiny ImageNet and a generic class-per-folder tree.

Tiny ImageNet (``tiny-imagenet-200`` layout; the path may be that directory or its parent)::

    wnids.txt                              one class id (wnid) per line
    train/<wnid>/images/*.JPEG             training images of each class
    val/images/*.JPEG                      the official validation images
    val/val_annotations.txt                "<file>\\t<wnid>\\t..." per line

The official ``val`` set is our *test* split (its labels are public, the official test set's are
not); our validation split is held out of ``train``. Images are 64 x 64 RGB (grey ones are
converted, other sizes resized).

Image folder::

    root/<class>/*.png|jpg|jpeg|bmp|gif|webp            (seeded 20% test share, fixed seed 0)
    root/train/<class>/...  and optionally root/test/<class>/...   (given test split)

When ``root`` has a ``train/`` subfolder, that is the training data and ``test/`` (if present)
the test split; otherwise every top-level subfolder is a class and a fixed 20% share becomes the
test split. Class names are the sorted folder names. Every image is resized so its shorter side is
``image_size`` (default 32), centre-cropped to a square, and converted to RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.data.decode import decode_image, warn_undecodable
from pipeline.data.splits import Splits, build_splits
from pipeline.errors import DataError

TINY_DIR = "tiny-imagenet-200"
TINY_SIZE = 64
TINY_LAYOUT = (
    f"{TINY_DIR}/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt"
)
FOLDER_LAYOUT = "root/<class>/*.png|jpg (or root/train/<class>/... with optional root/test/<class>/...)"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def read_image(path: Path, size: int) -> np.ndarray:
    """``decode_image``, raising ``DataError`` for a file that cannot be decoded."""
    image = decode_image(path, size)
    if image is None:
        raise DataError(f"cannot read image {path}")
    return image


def read_images(paths: list[Path], size: int) -> tuple[torch.Tensor, list[int]]:
    """The decodable images as one uint8 tensor N x 3 x size x size, and their positions in ``paths``.

    Undecodable files are skipped, with one warning line for all of them."""
    images = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    kept: list[int] = []
    bad: list[Path] = []
    for index, path in enumerate(paths):
        image = decode_image(path, size)
        if image is None:
            bad.append(path)
            continue
        images[len(kept)] = torch.from_numpy(image).permute(2, 0, 1)
        kept.append(index)
    if bad:
        warn_undecodable(len(bad), bad[0], str(Path(bad[0]).parent.parent))
    return images[: len(kept)], kept


def _read_labelled(paths: list[Path], labels: list[int], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, kept = read_images(paths, size)
    return images, torch.tensor([labels[i] for i in kept], dtype=torch.int64)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _resolve_tiny(path: str | None) -> Path:
    if path is None:
        raise DataError(f"data.path is required for tinyimagenet; expected {TINY_LAYOUT}")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"data path {root} does not exist; expected {TINY_LAYOUT}")
    for candidate in ([root / TINY_DIR, root] if root.name != TINY_DIR else [root]):
        if (candidate / "wnids.txt").is_file() and (candidate / "train").is_dir() and (
            candidate / "val" / "val_annotations.txt"
        ).is_file():
            return candidate
    raise DataError(f"data path {root} is not in the expected layout: {TINY_LAYOUT}")


def tinyimagenet_listing(path: str | None) -> tuple[Path, list[str], list[Path], list[int]]:
    """The Tiny ImageNet root, its wnids and training files with labels (listed, not read)."""
    root = _resolve_tiny(path)
    wnids = [line.strip() for line in (root / "wnids.txt").read_text().splitlines() if line.strip()]
    if len(wnids) < 2 or len(set(wnids)) != len(wnids):
        raise DataError(f"{root / 'wnids.txt'} must list at least 2 distinct class ids; expected {TINY_LAYOUT}")
    class_index = {wnid: index for index, wnid in enumerate(wnids)}
    train_paths: list[Path] = []
    train_labels: list[int] = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        files = _image_files(folder) if folder.is_dir() else []
        if not files:
            raise DataError(f"no training images in {folder}; expected {TINY_LAYOUT}")
        train_paths += files
        train_labels += [class_index[wnid]] * len(files)
    return root, wnids, train_paths, train_labels


def load_tinyimagenet_splits(path: str | None, val_fraction: float, seed: int) -> Splits:
    """Tiny ImageNet: 200 classes of 64 x 64 images; official val = our test split."""
    root, wnids, train_paths, train_labels = tinyimagenet_listing(path)
    class_index = {wnid: index for index, wnid in enumerate(wnids)}
    test_paths: list[Path] = []
    test_labels: list[int] = []
    annotations = root / "val" / "val_annotations.txt"
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in class_index:
            raise DataError(f"{annotations} line {number} does not name a file and a wnid from wnids.txt")
        image_path = root / "val" / "images" / fields[0]
        if not image_path.is_file():
            raise DataError(f"{annotations} line {number} names missing image {image_path}")
        test_paths.append(image_path)
        test_labels.append(class_index[fields[1]])
    train_images, train_tensor_labels = _read_labelled(train_paths, train_labels, TINY_SIZE)
    test_images, test_tensor_labels = _read_labelled(test_paths, test_labels, TINY_SIZE)
    return build_splits(
        name="tinyimagenet",
        train_images=train_images,
        train_labels=train_tensor_labels,
        test_images=test_images,
        test_labels=test_tensor_labels,
        num_classes=len(wnids),
        val_fraction=val_fraction,
        seed=seed,
        class_names=tuple(wnids),
    )


def _class_tree(folder: Path, classes: list[str] | None) -> tuple[list[str], list[Path], list[int]]:
    """Files and labels of a class-per-folder tree; ``classes`` fixes the class order when given."""
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{folder} has class folder(s) {unknown} that are not in the training classes")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        if (folder / name).is_dir():
            files = _image_files(folder / name)
            paths += files
            labels += [index] * len(files)
    return classes, paths, labels


def folder_listing(path: str | None, image_size: int = 32) -> tuple[Path, list[str], list[Path], list[int]]:
    """The folder data set's root, classes and training files with labels (listed, not read)."""
    if path is None:
        raise DataError(f"data.path is required for the folder data set; expected {FOLDER_LAYOUT}")
    if image_size < 8:
        raise DataError(f"folder image_size must be at least 8, got {image_size}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"data path {root} does not exist or is not a directory; expected {FOLDER_LAYOUT}")
    has_train = (root / "train").is_dir()
    classes, train_paths, train_labels = _class_tree(root / "train" if has_train else root, None)
    if len(classes) < 2 or not train_paths:
        raise DataError(f"data path {root} holds no images in at least 2 class folders; expected {FOLDER_LAYOUT}")
    empty = [name for index, name in enumerate(classes) if index not in set(train_labels)]
    if empty:
        raise DataError(f"data path {root}: class folder(s) {empty} hold no images; expected {FOLDER_LAYOUT}")
    return root, classes, train_paths, train_labels


def load_folder_splits(path: str | None, val_fraction: float, seed: int, image_size: int = 32) -> Splits:
    """A class-per-folder image tree resized to ``image_size``; see the module docstring for layouts."""
    root, classes, train_paths, train_labels = folder_listing(path, image_size)
    has_train = (root / "train").is_dir()
    test_images: torch.Tensor | None = None
    test_tensor_labels: torch.Tensor | None = None
    if has_train:
        test_paths: list[Path] = []
        test_labels: list[int] = []
        if (root / "test").is_dir():
            _, test_paths, test_labels = _class_tree(root / "test", classes)
        test_images, test_tensor_labels = _read_labelled(test_paths, test_labels, image_size)
    train_images, train_tensor_labels = _read_labelled(train_paths, train_labels, image_size)
    return build_splits(
        name="folder",
        train_images=train_images,
        train_labels=train_tensor_labels,
        test_images=test_images,
        test_labels=test_tensor_labels,
        num_classes=len(classes),
        val_fraction=val_fraction,
        seed=seed,
        class_names=tuple(classes),
    )
