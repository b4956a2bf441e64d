"""Data sets that need no download: scikit-learn's digits (the embedded default) and synthetic data.

- ``digits``: the 1,797 8x8 grey images shipped inside scikit-learn, upsampled (bilinear) to
  32 x 32 and repeated over three channels (RGB uint8). A fixed 20% (seed 0, stratified) is the
  test split; the validation share is held out of the remaining training images with the run seed.
- ``synthetic``: seeded, learnable images for tests: each class owns a smooth random colour
  pattern; an image is its class pattern, randomly shifted, plus noise. Same seed, same images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from pipeline.data.splits import Splits, build_splits
from pipeline.errors import DataError

DIGITS_SIZE = 32
SYNTHETIC_SIZE = 32


def load_digits_splits(val_fraction: float, seed: int) -> Splits:
    """scikit-learn's digits at 32 px RGB, with a fixed test split and a seeded validation split."""
    bunch = load_digits()
    grey = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8
    upsampled = F.interpolate(grey, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    images = (upsampled.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).repeat(1, 3, 1, 1)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return build_splits(
        name="digits",
        train_images=images,
        train_labels=labels,
        test_images=None,
        test_labels=None,
        num_classes=10,
        val_fraction=val_fraction,
        seed=seed,
        class_names=tuple(str(name) for name in bunch.target_names),
    )


def make_synthetic_images(
    num_classes: int, num_images: int, seed: int, size: int = SYNTHETIC_SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_images`` seeded uint8 images (balanced over classes) and their int64 labels."""
    if num_classes < 2:
        raise DataError(f"synthetic data needs at least 2 classes, got {num_classes}")
    if num_images < 2 * num_classes:
        raise DataError(f"synthetic data needs at least 2 images per class ({2 * num_classes}), got {num_images}")
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, 3, 4, 4, generator=generator)
    patterns = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    labels = torch.arange(num_images, dtype=torch.int64) % num_classes
    labels = labels[torch.randperm(num_images, generator=generator)]
    shifts = torch.randint(-3, 4, (num_images, 2), generator=generator)
    images = torch.empty(num_images, 3, size, size)
    for index in range(num_images):
        dy, dx = int(shifts[index, 0]), int(shifts[index, 1])
        images[index] = torch.roll(patterns[labels[index]], shifts=(dy, dx), dims=(1, 2))
    images = images + 0.15 * torch.randn(images.shape, generator=generator)
    return (images.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8), labels


def load_synthetic_splits(num_classes: int, num_images: int, val_fraction: float, seed: int) -> Splits:
    """Synthetic images drawn from ``seed``; 20% fixed test share, then the seeded validation share."""
    images, labels = make_synthetic_images(num_classes, num_images, seed)
    return build_splits(
        name="synthetic",
        train_images=images,
        train_labels=labels,
        test_images=None,
        test_labels=None,
        num_classes=num_classes,
        val_fraction=val_fraction,
        seed=seed,
        class_names=tuple(f"class_{index}" for index in range(num_classes)),
    )
