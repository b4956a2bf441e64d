"""Split sizes, determinism, disjointness; augmentation, batching, resolution and calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data import (
    ElasticResolutionSampler,
    calibration_subset,
    choose_resolution,
    iterate_batches,
    load_splits,
    normalize,
    num_batches,
    random_resized_crop_flip,
    resize,
)
from pipeline.data.splits import holdout_indices

torch.set_num_threads(1)


def _rows(images: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in images}


@pytest.fixture(scope="module")
def synthetic():
    return load_splits("synthetic", seed=3, synthetic_classes=4, synthetic_images=200)


def test_split_sizes_and_disjointness(synthetic):
    assert synthetic.sizes == {"train": 136, "val": 24, "test": 40}
    train, val, test = _rows(synthetic.train_images), _rows(synthetic.val_images), _rows(synthetic.test_images)
    assert len(train) == 136 and len(val) == 24  # noise makes every image unique
    assert not train & val and not train & test and not val & test
    assert np.bincount(synthetic.val_labels.numpy()).tolist() == [6, 6, 6, 6]  # stratified


def test_same_seed_same_splits_other_seed_other_val(synthetic):
    again = load_splits("synthetic", seed=3, synthetic_classes=4, synthetic_images=200)
    assert torch.equal(synthetic.val_images, again.val_images)
    assert torch.equal(synthetic.train_labels, again.train_labels)
    first = load_splits("digits", seed=0)
    second = load_splits("digits", seed=1)
    assert torch.equal(first.test_images, second.test_images)  # fixed test split
    assert not torch.equal(first.val_labels, second.val_labels) or not torch.equal(first.val_images, second.val_images)
    assert first.sizes == second.sizes


def test_holdout_indices_partition():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    kept, held = holdout_indices(labels, 0.15, seed=7)
    assert len(held) == 15 and sorted(np.concatenate([kept, held]).tolist()) == list(range(100))
    counts = np.bincount(labels[held], minlength=3)
    assert all(abs(count - 0.15 * total) <= 1 for count, total in zip(counts, (50, 30, 20), strict=True))  # stratified
    assert not set(kept.tolist()) & set(held.tolist())
    assert np.array_equal(held, holdout_indices(labels, 0.15, seed=7)[1])
    assert not np.array_equal(held, holdout_indices(labels, 0.15, seed=8)[1])


def test_statistics_come_from_training_images(synthetic):
    pixels = synthetic.train_images.double() / 255.0
    expected = pixels.mean(dim=(0, 2, 3))
    assert torch.allclose(torch.tensor(synthetic.mean, dtype=torch.float64), expected, atol=1e-9)
    normalized = normalize(synthetic.train_images, synthetic.mean, synthetic.std)
    assert normalized.dtype == torch.float32
    assert torch.allclose(normalized.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(normalized.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


def test_synthetic_is_learnable(synthetic):
    # nearest class mean on raw pixels must beat chance (25%) by far
    train = synthetic.train_images.float().flatten(1)
    centroids = torch.stack([train[synthetic.train_labels == c].mean(0) for c in range(4)])
    predicted = torch.cdist(synthetic.val_images.float().flatten(1), centroids).argmin(1)
    assert (predicted == synthetic.val_labels).float().mean() > 0.8


def test_crop_flip_shape_device_determinism(synthetic):
    images = normalize(synthetic.train_images[:16], synthetic.mean, synthetic.std)
    first = random_resized_crop_flip(images, 24, torch.Generator().manual_seed(5))
    second = random_resized_crop_flip(images, 24, torch.Generator().manual_seed(5))
    other = random_resized_crop_flip(images, 24, torch.Generator().manual_seed(6))
    assert first.shape == (16, 3, 24, 24) and first.device == images.device and first.dtype == torch.float32
    assert torch.equal(first, second) and not torch.equal(first, other)


def test_full_crop_is_identity_or_mirror(synthetic):
    images = normalize(synthetic.train_images[:32], synthetic.mean, synthetic.std)
    out = random_resized_crop_flip(images, 32, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    same = (out - images).abs().flatten(1).amax(1) < 1e-4
    mirrored = (out - images.flip(-1)).abs().flatten(1).amax(1) < 1e-4
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < 32


def test_small_crop_zooms_in():
    # left half 0, right half 1: a crop of a quarter of the area is mostly one value or the edge
    image = torch.zeros(64, 1, 32, 32)
    image[..., 16:] = 1.0
    out = random_resized_crop_flip(image, 8, torch.Generator().manual_seed(1), scale=(0.05, 0.05), ratio=(1.0, 1.0))
    spread = out.flatten(1).amax(1) - out.flatten(1).amin(1)
    assert (spread < 1e-6).float().mean() > 0.5  # most small crops lie entirely on one side


def test_resize_keeps_dtype():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert resize(images, 16).shape == (2, 3, 16, 16) and resize(images, 16).dtype == torch.uint8
    assert resize(images, 32) is images
    assert resize(images.float(), 24).shape == (2, 3, 24, 24)


def test_iterate_batches_covers_each_image_once(synthetic):
    images, labels = synthetic.train_images, synthetic.train_labels
    seen = [y for _, y in iterate_batches(images, labels, 32, shuffle=True, generator=torch.Generator().manual_seed(0))]
    assert [len(y) for y in seen] == [32, 32, 32, 32, 8] == [32] * 4 + [8]
    assert sorted(torch.cat(seen).tolist()) == sorted(labels.tolist())
    again = [y for _, y in iterate_batches(images, labels, 32, shuffle=True, generator=torch.Generator().manual_seed(0))]
    assert all(torch.equal(a, b) for a, b in zip(seen, again, strict=True))
    dropped = list(iterate_batches(images, labels, 32, drop_last=True))
    assert len(dropped) == 4 == num_batches(136, 32, drop_last=True)
    assert torch.equal(dropped[0][0], images[:32])
    with pytest.raises(ValueError, match="Generator"):
        next(iterate_batches(images, labels, 8, shuffle=True))


def test_iterate_batches_ranks_are_disjoint_and_equal():
    images = torch.arange(11, dtype=torch.uint8).view(11, 1, 1, 1)
    labels = torch.arange(11)
    shares = [
        torch.cat([y for _, y in iterate_batches(images, labels, 2, True, torch.Generator().manual_seed(4), rank=r, world_size=2)])
        for r in range(2)
    ]
    assert len(shares[0]) == len(shares[1]) == 5 == num_batches(11, 1, world_size=2)
    assert not set(shares[0].tolist()) & set(shares[1].tolist())


def test_resolution_choice():
    picks = [choose_resolution([24, 28, 32], torch.Generator().manual_seed(s)) for s in range(30)]
    assert set(picks) == {24, 28, 32}
    sampler = ElasticResolutionSampler([24, 32], torch.Generator().manual_seed(9))
    twin = ElasticResolutionSampler([24, 32], torch.Generator().manual_seed(9))
    drawn = [sampler.next_resolution() for _ in range(20)]
    assert drawn == [r for r, _ in zip(twin, range(20), strict=False)]
    with pytest.raises(ValueError):
        ElasticResolutionSampler([], torch.Generator())


def test_calibration_subset_fixed(synthetic):
    first = calibration_subset(synthetic, 50, seed=2)
    assert first.shape == (50, 3, 32, 32) and first.dtype == torch.uint8
    assert torch.equal(first, calibration_subset(synthetic, 50, seed=2))
    assert not torch.equal(first, calibration_subset(synthetic, 50, seed=3))
    assert _rows(first) <= _rows(synthetic.train_images)
    assert calibration_subset(synthetic, 10_000, seed=0).shape[0] == 136
