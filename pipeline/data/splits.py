"""The ``Splits`` value every stage trains and evaluates on, and the seeded splitting helpers.

A ``Splits`` holds whole data sets in memory as uint8 tensors (N x 3 x H x W) with int64 labels:

- ``train``: what the optimiser sees;
- ``val``: a fixed, seeded share held out of the *training* data (stratified by class when every
  class has enough images). Search, early stopping and BN-recalibrated accuracy use it;
- ``test``: the data set's own test split (or a fixed held-out share when it has none). It is
  never used for selection, only for the final report. It may be empty (zero rows) when a data
  set has no test split, for example an image folder with ``train/`` but no ``test/``.

``mean`` and ``std`` are per-channel statistics of the training images scaled to [0, 1].
``hold_out_from_train`` carves a further seeded slice out of the training split (Cream's board
and meta-gradient images), never out of the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from pipeline.data.imageset import ImageSet, TensorImageSet
from pipeline.errors import DataError

if TYPE_CHECKING:
    from pipeline.data.streamed import StreamedSplits

# The test split of data sets without their own is drawn with this fixed seed, so that every run
# (whatever its seed) reports on the same test images.
TEST_SPLIT_SEED = 0
TEST_FRACTION = 0.2


@dataclass
class Splits:
    """Train / validation / test tensors of one data set, plus what a model needs to know of it."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str
    class_names: tuple[str, ...] = field(default=())
    #: evaluation resizes to resolution / eval_crop and takes the centre crop (1.0: the whole image)
    eval_crop: float = 1.0
    #: in-memory splits; ``streamed.StreamedSplits`` says True
    streamed: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for part in ("train", "val", "test"):
            images = getattr(self, f"{part}_images")
            labels = getattr(self, f"{part}_labels")
            if images.dtype != torch.uint8 or labels.dtype != torch.int64:
                raise DataError(f"{self.name}: {part} images must be uint8 and labels int64")
            if images.shape[0] != labels.shape[0]:
                raise DataError(f"{self.name}: {part} has {images.shape[0]} images but {labels.shape[0]} labels")
            if images.shape[0] and tuple(images.shape[1:]) != (3, self.image_size, self.image_size):
                raise DataError(
                    f"{self.name}: {part} images have shape {tuple(images.shape[1:])}, "
                    f"expected (3, {self.image_size}, {self.image_size})"
                )
        if self.train_images.shape[0] == 0:
            raise DataError(f"{self.name}: the training split is empty")

    @property
    def sizes(self) -> dict[str, int]:
        """Number of images per split."""
        return {
            "train": int(self.train_images.shape[0]),
            "val": int(self.val_images.shape[0]),
            "test": int(self.test_images.shape[0]),
        }

    @property
    def train(self) -> TensorImageSet:
        return TensorImageSet(self.train_images, self.train_labels)

    @property
    def val(self) -> TensorImageSet:
        return TensorImageSet(self.val_images, self.val_labels)

    @property
    def test(self) -> TensorImageSet:
        return TensorImageSet(self.test_images, self.test_labels)

    def with_train(self, train: ImageSet) -> Splits:
        """These splits with another training set (validation, test and statistics kept)."""
        assert isinstance(train, TensorImageSet)
        return replace(self, train_images=train.images, train_labels=train.labels)

    def eval_subset(self, count: int | None, seed: int) -> TensorImageSet:
        """The validation images accuracy is measured on: the first ``count`` (all when None)."""
        return self.val if count is None else self.val.head(count)

    def for_device(self, device: torch.device | str) -> Splits:
        """Nothing to set up for in-memory splits."""
        return self


def holdout_indices(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (kept, held_out) indices, seeded and stratified if possible.

    Stratification falls back to a plain seeded shuffle when some class has too few images.
    Both index arrays are sorted, so the order of images inside a split is deterministic.
    """
    count = len(labels)
    if count < 2:
        raise DataError(f"cannot hold out {fraction:.0%} of only {count} image(s)")
    indices = np.arange(count)
    try:
        kept, held = train_test_split(indices, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:
        kept, held = train_test_split(indices, test_size=fraction, random_state=seed, stratify=None)
    return np.sort(kept), np.sort(held)


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1], computed in chunks."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].to(torch.float64) / 255.0
        total += block.sum(dim=(0, 2, 3))
        total_sq += (block * block).sum(dim=(0, 2, 3))
        pixels += block.shape[0] * block.shape[2] * block.shape[3]
    mean = total / pixels
    std = (total_sq / pixels - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def build_splits(
    *,
    name: str,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor | None,
    test_labels: torch.Tensor | None,
    num_classes: int,
    val_fraction: float,
    seed: int,
    class_names: tuple[str, ...] = (),
) -> Splits:
    """Hold a seeded validation share out of the training data and assemble ``Splits``.

    When ``test_images`` is None, a fixed share (``TEST_FRACTION``, seed ``TEST_SPLIT_SEED``) of
    the given training data becomes the test split first; the validation share is then taken from
    what remains.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    train_labels = train_labels.to(torch.int64)
    for labels in (train_labels, test_labels):
        if labels is not None and labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(f"{name}: labels must lie in [0, {num_classes}), found {labels.min()}..{labels.max()}")
    if test_images is None:
        kept, held = holdout_indices(train_labels.numpy(), TEST_FRACTION, TEST_SPLIT_SEED)
        test_images, test_labels = train_images[held], train_labels[held]
        train_images, train_labels = train_images[kept], train_labels[kept]
    elif test_labels is None:
        raise DataError(f"{name}: test images given without labels")
    kept, held = holdout_indices(train_labels.numpy(), val_fraction, seed)
    fit_images = train_images[kept].contiguous()
    mean, std = channel_stats(fit_images)
    return Splits(
        train_images=fit_images,
        train_labels=train_labels[kept].contiguous(),
        val_images=train_images[held].contiguous(),
        val_labels=train_labels[held].contiguous(),
        test_images=test_images.contiguous(),
        test_labels=test_labels.to(torch.int64).contiguous(),
        num_classes=num_classes,
        image_size=int(train_images.shape[-1]),
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        name=name,
        class_names=class_names,
    )


def calibration_subset(splits: Splits | StreamedSplits, num_images: int, seed: int) -> torch.Tensor:
    """A fixed, seeded subset of the training images (uint8) for BatchNorm recalibration.

    The same ``(splits, num_images, seed)`` always gives the same images in the same order.
    ``num_images`` larger than the training split returns every training image (permuted).
    Streamed splits decode them (undecodable files left out).
    """
    if num_images < 1:
        raise DataError(f"calibration subset needs at least 1 image, got {num_images}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(splits.train), generator=generator)[:num_images]
    return splits.train.take(order)[0]


@dataclass
class TrainingHoldOut:
    """Images set aside from the training split (Cream's board and meta-gradient images).

    ``train_indices`` are positions in the training split they were taken from (sorted), and
    ``seed`` is the seed that drew them, so a run can record exactly which images were held out.
    For streamed splits the slice is decoded into memory (it is small) and an undecodable file
    in it is left out of ``images``/``labels``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    train_indices: list[int]
    seed: int


def hold_out_from_train(splits: Splits | StreamedSplits, num_images: int, seed: int) -> tuple[Splits | StreamedSplits, TrainingHoldOut]:
    """Carve a seeded slice of ``num_images`` out of the training split.

    Returns the splits without those images (validation and test unchanged, the normalisation
    statistics kept) and the slice. The validation split is never touched, so the data the search
    later ranks architectures on stays unseen by training.
    """
    count = len(splits.train)
    if not 1 <= num_images < count:
        raise DataError(f"{splits.name}: cannot hold out {num_images} of {count} training images")
    generator = torch.Generator().manual_seed(int(seed))
    held = torch.randperm(count, generator=generator)[:num_images].sort().values
    keep = torch.ones(count, dtype=torch.bool)
    keep[held] = False
    images, labels = splits.train.take(held)
    reduced = splits.with_train(splits.train.subset(keep))
    slice_ = TrainingHoldOut(images=images.contiguous(), labels=labels.contiguous(),
                             train_indices=[int(i) for i in held], seed=int(seed))
    return reduced, slice_
