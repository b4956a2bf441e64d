"""Streamed image data: ImageNet (ILSVRC layout) and large image folders, decoded on the fly.

ImageNet (``data.dataset: imagenet``)::

    root/train/<wnid>/*.JPEG      training images, one folder per class (sorted wnids = labels)
    root/val/<wnid>/*.JPEG        the official validation images, sorted into the same folders

The official ``val/`` is our *test* split (as Tiny ImageNet's is); our validation split is a
seeded share held out of ``train/`` (``splits.holdout_indices``, as every data set's). Normalisation
uses the standard ImageNet statistics (OFA's), and evaluation resizes to resolution / 0.875 and
takes the centre crop (``eval_crop``), as OFA does.

A ``folder`` data set streams when ``data.stream`` is ``on``, or ``auto`` and its decoded size at
``data.image_size`` exceeds ``data.memory_budget_mb``; its splits are the in-memory loader's
(``train/`` + optional ``test/``, or a fixed 20% test share), and its mean/std come from a fixed
seeded sample of ``STATS_SAMPLE`` training images.

Splits hold only listings (``imageset.FileImageSet``: numpy arrays of relative path bytes and
int64 labels), so memory does not grow with image size. Layout errors are one ``DataError`` line,
found from directory listings alone (``check_data`` runs them before Ray starts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from pipeline.data.images import FOLDER_LAYOUT, IMAGE_SUFFIXES, folder_listing
from pipeline.data.imageset import FileImageSet, ImageSet, LoaderSettings, with_loader
from pipeline.data.splits import TEST_FRACTION, TEST_SPLIT_SEED, Splits, channel_stats, holdout_indices
from pipeline.errors import DataError

IMAGENET_LAYOUT = "root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG (the ILSVRC class-per-folder layout)"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_EVAL_CROP = 0.875
#: training images decoded to estimate a streamed folder's mean and std (seeded)
STATS_SAMPLE = 512
STATS_SEED = 0
#: validation images accuracy is measured on for streamed data when no count is configured (OFA's search)
STREAMED_EVAL_IMAGES = 10_000


@dataclass(frozen=True)
class Listing:
    """Files of one split folder: paths relative to ``root`` (bytes) and int64 labels."""

    root: Path
    paths: np.ndarray
    labels: np.ndarray


def _class_files(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries
                      if not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
                      and e.is_file())


def _class_folders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _scan(folder: Path, classes: list[str]) -> tuple[Listing, list[str]]:
    """The listing of ``folder/<class>/*`` for ``classes`` (label = position), and the empty classes."""
    parts: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    empty: list[str] = []
    for index, name in enumerate(classes):
        if not (folder / name).is_dir():
            continue
        files = _class_files(folder / name)
        if not files:
            empty.append(name)
            continue
        parts.append(np.array([f"{name}/{file}".encode() for file in files], dtype=np.bytes_))
        labels.append(np.full(len(files), index, dtype=np.int64))
    width = max((p.dtype.itemsize for p in parts), default=1)
    paths = np.concatenate([p.astype(f"S{width}") for p in parts]) if parts else np.empty(0, dtype="S1")
    return Listing(folder, paths, np.concatenate(labels) if labels else np.empty(0, np.int64)), empty


def imagenet_listing(path: str | None) -> tuple[list[str], Listing, Listing | None]:
    """The wnids, the ``train/`` listing and the ``val/`` listing (None without ``val/``); no image is read."""
    if path is None:
        raise DataError(f"data.path is required for imagenet; expected {IMAGENET_LAYOUT}")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"data path {root} does not exist; expected {IMAGENET_LAYOUT}")
    if not root.is_dir():
        raise DataError(f"data path {root} is a file, not a directory; expected {IMAGENET_LAYOUT}")
    if not (root / "train").is_dir():
        raise DataError(f"data path {root} has no train/ folder; expected {IMAGENET_LAYOUT}")
    classes = _class_folders(root / "train")
    train, empty = _scan(root / "train", classes)
    if len(train.paths) == 0:
        raise DataError(f"data path {root} holds no images in train/<wnid>/; expected {IMAGENET_LAYOUT}")
    if empty:
        raise DataError(f"data path {root}: class folder(s) {empty} of train/ hold no images; "
                        f"expected {IMAGENET_LAYOUT}")
    if len(classes) < 2:
        raise DataError(f"data path {root} has fewer than 2 class folders in train/; expected {IMAGENET_LAYOUT}")
    if not (root / "val").is_dir():
        return classes, train, None
    unknown = sorted(set(_class_folders(root / "val")) - set(classes))
    if unknown:
        raise DataError(f"data path {root}: validation class folder(s) {unknown[:5]} of val/ are not in train/; "
                        f"expected {IMAGENET_LAYOUT}")
    val, _ = _scan(root / "val", classes)
    return classes, train, val


def _relative(paths: list[Path], root: Path) -> np.ndarray:
    return np.array([str(p.relative_to(root)).encode() for p in paths], dtype=np.bytes_)


@dataclass
class StreamedSplits:
    """Train / validation / test listings of one data set, with what a model needs to know of it.

    The same attributes as ``splits.Splits`` that consumers read (``train``/``val``/``test`` image
    sets, ``num_classes``, ``image_size``, ``mean``, ``std``, ``eval_crop``, ``sizes``)."""

    train: FileImageSet
    val: FileImageSet
    test: FileImageSet
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str
    class_names: tuple[str, ...] = ()
    eval_crop: float = 1.0
    streamed: ClassVar[bool] = True

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def with_train(self, train: ImageSet) -> StreamedSplits:
        assert isinstance(train, FileImageSet)
        return replace(self, train=train)

    def eval_subset(self, count: int | None, seed: int) -> FileImageSet:
        """A seeded subset of the validation split (``STREAMED_EVAL_IMAGES`` when ``count`` is None);
        seeded rather than the first images, since the listing is ordered by class."""
        count = min(len(self.val), STREAMED_EVAL_IMAGES if count is None else count)
        chosen = self.val.sample(count, seed)
        assert isinstance(chosen, FileImageSet)
        return chosen

    def for_device(self, device: torch.device | str) -> StreamedSplits:
        """Pinned memory and persistent decode workers when batches go to a CUDA device."""
        cuda = torch.device(device).type == "cuda"
        settings = replace(self.train.loader, pin_memory=cuda, persistent=cuda)
        return replace(self, train=self.train.with_loader(settings), val=self.val.with_loader(settings),
                       test=self.test.with_loader(settings))


def _split(root: Path, listing: Listing, test: Listing | None, val_fraction: float, seed: int, size: int,
           loader: LoaderSettings) -> tuple[FileImageSet, FileImageSet, FileImageSet]:
    """Train/val/test sets by the in-memory rule: a fixed test share when there is no test listing,
    then the seeded validation share of what remains."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    full = FileImageSet(root, listing.paths, listing.labels, size, loader)
    if test is None:
        kept, held = holdout_indices(listing.labels, TEST_FRACTION, TEST_SPLIT_SEED)
        test_set, full = full.subset(held), full.subset(kept)
    else:
        test_set = FileImageSet(root, test.paths, test.labels, size, loader)
    kept, held = holdout_indices(full.labels.numpy(), val_fraction, seed)
    return full.subset(kept), full.subset(held), test_set


def _prefixed(listing: Listing, prefix: str) -> Listing:
    paths = np.char.add(prefix.encode(), listing.paths) if len(listing.paths) else listing.paths
    return Listing(listing.root.parent, paths, listing.labels)


def load_imagenet_splits(path: str | None, val_fraction: float, seed: int, image_size: int,
                         loader: LoaderSettings) -> StreamedSplits:
    """ImageNet in the ILSVRC layout as listings (see the module docstring)."""
    classes, train, val = imagenet_listing(path)
    root = train.root.parent
    test = _prefixed(val, "val/") if val is not None else Listing(root, np.empty(0, "S1"), np.empty(0, np.int64))
    train_set, val_set, test_set = _split(root, _prefixed(train, "train/"), test, val_fraction, seed,
                                          image_size, loader)
    return StreamedSplits(train_set, val_set, test_set, len(classes), image_size, IMAGENET_MEAN, IMAGENET_STD,
                          "imagenet", tuple(classes), IMAGENET_EVAL_CROP)


def load_streamed_folder_splits(path: str | None, val_fraction: float, seed: int, image_size: int,
                                loader: LoaderSettings) -> StreamedSplits:
    """An image folder as listings; mean/std from ``STATS_SAMPLE`` seeded training images."""
    root, classes, train_paths, train_labels = folder_listing(path, image_size)
    test: Listing | None = None
    if (root / "train").is_dir():
        test = Listing(root, np.empty(0, "S1"), np.empty(0, np.int64))
        if (root / "test").is_dir():
            listing, _ = _scan(root / "test", classes)
            test = _prefixed(listing, "test/")
    train = Listing(root, _relative(train_paths, root), np.asarray(train_labels, dtype=np.int64))
    train_set, val_set, test_set = _split(root, train, test, val_fraction, seed, image_size, loader)
    # decoded here with DataLoader workers whatever data.loader is, so loading needs no Ray
    stats_set = with_loader(train_set.sample(STATS_SAMPLE, STATS_SEED), replace(loader, kind="torch"))
    sample, _ = stats_set.take(np.arange(min(STATS_SAMPLE, len(train_set))))
    if sample.shape[0] == 0:
        raise DataError(f"data path {root}: none of the sampled training images could be decoded; "
                        f"expected {FOLDER_LAYOUT}")
    mean, std = channel_stats(sample)
    return StreamedSplits(train_set, val_set, test_set, len(classes), image_size, mean, std,  # type: ignore[arg-type]
                          "folder", tuple(classes))


def folder_should_stream(path: str | None, image_size: int, budget_mb: float) -> bool:
    """Whether a folder's training images, decoded at ``image_size``, exceed ``budget_mb``."""
    _, _, train_paths, _ = folder_listing(path, image_size)
    return len(train_paths) * 3 * image_size * image_size > budget_mb * 2**20


def materialise(splits: StreamedSplits) -> Splits:
    """Streamed splits decoded whole into memory (``data.stream: off`` for imagenet)."""
    parts = {name: getattr(splits, name).take(np.arange(len(getattr(splits, name))))
             for name in ("train", "val", "test")}
    return Splits(
        train_images=parts["train"][0], train_labels=parts["train"][1],
        val_images=parts["val"][0], val_labels=parts["val"][1],
        test_images=parts["test"][0], test_labels=parts["test"][1],
        num_classes=splits.num_classes, image_size=splits.image_size, mean=splits.mean, std=splits.std,
        name=splits.name, class_names=splits.class_names, eval_crop=splits.eval_crop,
    )

