"""Data sets and tensor augmentation for supernet training, evaluation and fine-tuning.

``load_splits(dataset, path, ...)`` returns a ``Splits`` (uint8 image tensors in memory, int64
labels, per-channel statistics) for one of:

- ``digits`` (default, embedded in scikit-learn), ``synthetic`` (seeded, for tests);
- ``cifar10`` / ``cifar100`` (python-pickle layout), ``tinyimagenet`` (``tiny-imagenet-200``
  layout), ``folder`` (class-per-folder image tree) from a directory the user names;
- ``imagenet`` (ILSVRC layout), always streamed: ``StreamedSplits`` of file listings decoded on the
  fly (``streamed``, ``imageset``); a large ``folder`` streams too (``data.stream``).

Consumers read every split through the ``ImageSet`` interface (``splits.train``/``val``/``test``:
``batches``, ``take``, ``subset``, ...), the same for in-memory and streamed splits.

Every data set gets a validation split held out of its training data (seeded, stratified when
possible); the test split is the data set's own or a fixed share, and is never used for selection.
A missing or malformed path raises ``DataError`` naming the path and the expected layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

from pipeline.config import DatasetName
from pipeline.data.augment import eval_transform, normalize, random_resized_crop_flip, resize, train_transform
from pipeline.data.batching import ElasticResolutionSampler, choose_resolution, iterate_batches, num_batches
from pipeline.data.builtin import load_digits_splits, load_synthetic_splits
from pipeline.data.cifar import cifar10_root, cifar100_root, load_cifar10_splits, load_cifar100_splits
from pipeline.data.images import folder_listing, load_folder_splits, load_tinyimagenet_splits, tinyimagenet_listing
from pipeline.data.imageset import (
    FileImageSet,
    ImageSet,
    LoaderKind,
    LoaderSettings,
    TensorImageSet,
    default_loader_workers,
)
from pipeline.data.splits import Splits, TrainingHoldOut, calibration_subset, hold_out_from_train
from pipeline.data.streamed import (
    StreamedSplits,
    folder_should_stream,
    imagenet_listing,
    load_imagenet_splits,
    load_streamed_folder_splits,
    materialise,
)
from pipeline.errors import DataError

if TYPE_CHECKING:
    from pipeline.config import DataConfig

DATASETS: tuple[str, ...] = get_args(DatasetName)


def load_splits(
    dataset: str,
    path: str | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
    synthetic_classes: int = 10,
    synthetic_images: int = 512,
    image_size: int = 32,
    stream: str = "auto",
    memory_budget_mb: float = 4096.0,
    loader_workers: int | None = None,
    loader_kind: LoaderKind = "torch",
    ray_data_cpus_per_task: float = 1.0,
) -> Splits | StreamedSplits:
    """Load ``dataset`` and split it; ``path`` is needed by cifar10/cifar100/tinyimagenet/folder/imagenet.

    ``seed`` fixes the validation split (and the synthetic images); ``image_size`` is the side
    length folder and imagenet images are resized to (other data sets keep their native size).
    ``stream`` (auto/on/off), ``memory_budget_mb``, ``loader_workers``, ``loader_kind`` (``loader``)
    and ``ray_data_cpus_per_task`` are ``DataConfig``'s.
    """
    if dataset in ("imagenet", "folder"):
        workers = default_loader_workers() if loader_workers is None else loader_workers
        loader = LoaderSettings(workers=workers, kind=loader_kind, cpus_per_task=ray_data_cpus_per_task)
        if dataset == "imagenet":
            splits = load_imagenet_splits(path, val_fraction, seed, image_size, loader)
            return materialise(splits) if stream == "off" else splits
        if stream == "on" or (stream == "auto" and folder_should_stream(path, image_size, memory_budget_mb)):
            return load_streamed_folder_splits(path, val_fraction, seed, image_size, loader)
    if dataset == "digits":
        return load_digits_splits(val_fraction, seed)
    if dataset == "synthetic":
        return load_synthetic_splits(synthetic_classes, synthetic_images, val_fraction, seed)
    if dataset == "cifar10":
        return load_cifar10_splits(path, val_fraction, seed)
    if dataset == "cifar100":
        return load_cifar100_splits(path, val_fraction, seed)
    if dataset == "tinyimagenet":
        return load_tinyimagenet_splits(path, val_fraction, seed)
    if dataset == "folder":
        return load_folder_splits(path, val_fraction, seed, image_size=image_size)
    raise DataError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}")


def check_data(data_cfg: DataConfig) -> None:
    """Raise the ``DataError`` the loader would, from the path's listing alone (no image is read).

    The driver runs this before Ray starts, so a missing path or a wrong layout is one line at once
    instead of a failure inside a Ray Train worker; the workers' loaders run the same checks.
    """
    if data_cfg.dataset == "cifar10":
        cifar10_root(data_cfg.path)
    elif data_cfg.dataset == "cifar100":
        cifar100_root(data_cfg.path)
    elif data_cfg.dataset == "tinyimagenet":
        tinyimagenet_listing(data_cfg.path)
    elif data_cfg.dataset == "folder":
        folder_listing(data_cfg.path, data_cfg.image_size)
    elif data_cfg.dataset == "imagenet":
        imagenet_listing(data_cfg.path)
    elif data_cfg.dataset not in DATASETS:
        raise DataError(f"unknown data set {data_cfg.dataset!r}; choose one of {', '.join(DATASETS)}")


def load_splits_from_config(data_cfg: DataConfig, seed: int = 0) -> Splits | StreamedSplits:
    """``load_splits`` with the fields of a ``pipeline.config.DataConfig`` (and the run seed)."""
    return load_splits(
        data_cfg.dataset,
        path=data_cfg.path,
        val_fraction=data_cfg.val_fraction,
        seed=seed,
        synthetic_classes=data_cfg.synthetic_classes,
        synthetic_images=data_cfg.synthetic_images,
        image_size=data_cfg.image_size,
        stream=data_cfg.stream,
        memory_budget_mb=data_cfg.memory_budget_mb,
        loader_workers=data_cfg.loader_workers,
        loader_kind=data_cfg.loader,
        ray_data_cpus_per_task=data_cfg.ray_data_cpus_per_task,
    )


__all__ = [
    "DATASETS",
    "DataError",
    "ElasticResolutionSampler",
    "FileImageSet",
    "ImageSet",
    "LoaderSettings",
    "StreamedSplits",
    "TensorImageSet",
    "Splits",
    "TrainingHoldOut",
    "calibration_subset",
    "check_data",
    "choose_resolution",
    "eval_transform",
    "hold_out_from_train",
    "iterate_batches",
    "load_splits",
    "load_splits_from_config",
    "normalize",
    "num_batches",
    "random_resized_crop_flip",
    "resize",
    "train_transform",
]
