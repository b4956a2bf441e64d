"""One split's images behind one interface, held in memory or streamed from files.

An ``ImageSet`` has a length, int64 ``labels``, and gives uint8 images N x 3 x S x S:

- ``batches(...)``: a pass in ``batching.batch_order``'s order (seeded shuffle, rank share);
  ``batches_from(orders)`` yields the batches of any sequence of index lists (an endless stream);
- ``take(indices)``: those images and labels as tensors; ``subset``/``head``/``sample``: a smaller
  set; ``concat``: two sets one after the other; ``cached(budget)``: decoded into memory if it fits.

``TensorImageSet`` wraps the in-memory tensors (indexing them exactly as before). ``FileImageSet``
holds a compact listing (a numpy array of relative path bytes and int64 labels, no decoded image)
and decodes on the fly in torch ``DataLoader`` workers (or, with ``LoaderSettings(kind="ray_data")``,
in Ray Data tasks on any node: ``ray_loader``) with ``decode.decode_image``, so all paths give the
same uint8 images for the same files. A file that cannot be decoded is dropped from its batch;
each pass logs one warning line with the count and the first such path.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.data.batching import batch_order, index_batches
from pipeline.data.decode import decode_image, warn_undecodable
from pipeline.data.ray_loader import ray_data_batches

_log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
#: how streamed batches are decoded (``data.loader``)
LoaderKind = Literal["torch", "ray_data"]


def _as_index(indices: Any, count: int) -> np.ndarray:
    """Integer positions from an index tensor/array/list or a boolean mask."""
    array = indices.cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
    if array.dtype == bool:
        if array.shape != (count,):
            raise ValueError(f"a mask of shape {array.shape} for {count} items")
        return np.flatnonzero(array)
    return array.astype(np.int64, copy=False).reshape(-1)


class ImageSet(ABC):
    """A split's images and labels (see the module docstring)."""

    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @abstractmethod
    def batches_from(self, orders: Iterable[torch.Tensor]) -> Iterator[Batch]:
        """``(uint8 images, labels)`` for every index list of ``orders``, in order."""

    @abstractmethod
    def subset(self, indices: Any) -> ImageSet:
        """The items at ``indices`` (positions or a boolean mask), in that order."""

    @abstractmethod
    def concat(self, other: ImageSet) -> ImageSet:
        """This set followed by ``other`` (of the same kind)."""

    @property
    @abstractmethod
    def decoded_bytes(self) -> int:
        """The bytes the whole set takes as uint8 images."""

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """One pass in ``batch_order``'s order."""
        return self.batches_from(batch_order(len(self), batch_size, shuffle, generator, drop_last, rank, world_size))

    def take(self, indices: Any, batch_size: int = 256) -> Batch:
        """The images and labels at ``indices`` as tensors (undecodable files left out)."""
        index = torch.as_tensor(_as_index(indices, len(self)), dtype=torch.int64)
        parts = list(self.batches_from(index.split(batch_size)))
        if not parts:
            return self.take_empty()
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    @abstractmethod
    def take_empty(self) -> Batch:
        """No images and no labels, shaped like this set's."""

    def head(self, count: int) -> ImageSet:
        """The first ``count`` items."""
        return self.subset(np.arange(min(count, len(self))))

    def sample(self, count: int, seed: int) -> ImageSet:
        """A seeded subset of ``count`` items (all when ``count`` >= len), kept in listing order."""
        if count >= len(self):
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(int(seed)))[:count]
        return self.subset(order.sort().values)

    def cached(self, budget_bytes: int) -> ImageSet:
        """The set decoded into memory when it fits in ``budget_bytes``, else itself."""
        return self


class TensorImageSet(ImageSet):
    """Images already in memory as a uint8 tensor (the in-memory data sets' path, unchanged)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels

    def batches_from(self, orders: Iterable[torch.Tensor]) -> Iterator[Batch]:
        return index_batches(self.images, self.labels, orders)

    def take(self, indices: Any, batch_size: int = 256) -> Batch:
        index = torch.as_tensor(_as_index(indices, len(self)), dtype=torch.int64)
        return self.images[index].contiguous(), self.labels[index].contiguous()

    def take_empty(self) -> Batch:
        return self.images[:0], self.labels[:0]

    def subset(self, indices: Any) -> TensorImageSet:
        if isinstance(indices, torch.Tensor) and indices.dtype == torch.bool:
            return TensorImageSet(self.images[indices].contiguous(), self.labels[indices].contiguous())
        index = torch.as_tensor(_as_index(indices, len(self)), dtype=torch.int64)
        return TensorImageSet(self.images[index], self.labels[index])

    def head(self, count: int) -> TensorImageSet:
        return TensorImageSet(self.images[:count], self.labels[:count])

    def concat(self, other: ImageSet) -> TensorImageSet:
        if not isinstance(other, TensorImageSet):
            raise TypeError("a TensorImageSet concatenates only with another")
        return TensorImageSet(torch.cat([self.images, other.images]), torch.cat([self.labels, other.labels]))

    @property
    def decoded_bytes(self) -> int:
        return int(self.images.numel())


@dataclass(frozen=True)
class LoaderSettings:
    """How a ``FileImageSet`` decodes: ``kind`` ``torch`` (DataLoader worker processes on this node:
    ``workers``, 0 for this process; pinned memory and persistent workers for CUDA consumers;
    batches prefetched per worker) or ``ray_data`` (Ray Data tasks of ``cpus_per_task`` CPUs on
    any node, ``ray_loader``)."""

    workers: int = 0
    pin_memory: bool = False
    persistent: bool = False
    prefetch: int = 2
    kind: LoaderKind = "torch"
    cpus_per_task: float = 1.0


def default_loader_workers() -> int:
    """Decode processes for a consumer that sets none: its torch thread budget (the CPUs a Ray
    worker or actor was given), at least 1 and at most 8."""
    return max(1, min(8, torch.get_num_threads()))


class _FileDataset(Dataset):
    """What DataLoader workers see: the root, the listing and the side length (picklable)."""

    def __init__(self, root: str, paths: np.ndarray, labels: np.ndarray, size: int) -> None:
        self.root, self.paths, self.labels, self.size = root, paths, labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray | None, int, int]:
        path = os.path.join(self.root, self.paths[index].decode())
        return decode_image(path, self.size), int(self.labels[index]), int(index)


def _collate(items: list[tuple[np.ndarray | None, int, int]]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Stack the decoded images of one batch; the positions of the undecodable ones come apart."""
    good = [(image, label) for image, label, _ in items if image is not None]
    bad = [index for image, _, index in items if image is None]
    if good:
        images = torch.from_numpy(np.stack([image for image, _ in good])).permute(0, 3, 1, 2).contiguous()
    else:
        images = torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    return images, torch.tensor([label for _, label in good], dtype=torch.int64), bad


class _OrderSlot:
    """The batch sampler of a reusable DataLoader: the index lists of the pass now running."""

    def __init__(self) -> None:
        self.orders: Iterable[torch.Tensor] = ()

    def __iter__(self) -> Iterator[list[int]]:
        for index in self.orders:
            yield index.tolist()


class FileImageSet(ImageSet):
    """A listing of image files decoded on the fly (see the module docstring)."""

    def __init__(self, root: str | Path, paths: np.ndarray, labels: np.ndarray | torch.Tensor, size: int,
                 loader: LoaderSettings | None = None) -> None:
        self.root = str(root)
        self.paths = np.asarray(paths, dtype=np.bytes_)
        label_array = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        self.labels = torch.from_numpy(label_array.astype(np.int64, copy=True))
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")
        self.size = int(size)
        self.loader = loader or LoaderSettings()
        self._slot: _OrderSlot | None = None
        self._loader: DataLoader | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_slot": None, "_loader": None}

    def with_loader(self, loader: LoaderSettings) -> FileImageSet:
        return FileImageSet(self.root, self.paths, self.labels, self.size, loader)

    def path(self, index: int) -> str:
        return os.path.join(self.root, self.paths[index].decode())

    def _data_loader(self) -> tuple[DataLoader, _OrderSlot]:
        """One DataLoader per set when its workers persist (reused pass after pass), else a new one."""
        if self._loader is not None and self._slot is not None:
            return self._loader, self._slot
        slot = _OrderSlot()
        settings = self.loader
        workers = settings.workers
        loader = DataLoader(
            _FileDataset(self.root, self.paths, self.labels.numpy(), self.size), batch_sampler=slot,
            num_workers=workers, collate_fn=_collate, pin_memory=settings.pin_memory,
            persistent_workers=settings.persistent and workers > 0,
            prefetch_factor=settings.prefetch if workers > 0 else None,
        )
        if settings.persistent and workers > 0:
            self._loader, self._slot = loader, slot
        return loader, slot

    def _decoded(self, orders: Iterable[torch.Tensor]) -> Iterable[tuple[torch.Tensor, torch.Tensor, list[int]]]:
        """``(images, labels, undecodable positions)`` per index list, from the configured loader."""
        if self.loader.kind == "ray_data":
            return ray_data_batches(self.root, self.paths, self.labels.numpy(), self.size, orders,
                                    self.loader.cpus_per_task)
        loader, slot = self._data_loader()
        slot.orders = orders
        return loader

    def batches_from(self, orders: Iterable[torch.Tensor]) -> Iterator[Batch]:
        bad: list[int] = []
        try:
            for images, labels, skipped in self._decoded(orders):
                bad += skipped
                if labels.shape[0]:
                    yield images, labels
        finally:
            if bad:
                warn_undecodable(len(bad), self.path(bad[0]), self.root)

    def take_empty(self) -> Batch:
        return torch.empty(0, 3, self.size, self.size, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)

    def subset(self, indices: Any) -> FileImageSet:
        index = _as_index(indices, len(self))
        return FileImageSet(self.root, self.paths[index], self.labels.numpy()[index], self.size, self.loader)

    def concat(self, other: ImageSet) -> FileImageSet:
        if not isinstance(other, FileImageSet) or other.root != self.root or other.size != self.size:
            raise TypeError("a FileImageSet concatenates only with another of the same root and size")
        width = max(self.paths.dtype.itemsize, other.paths.dtype.itemsize)
        paths = np.concatenate([self.paths.astype(f"S{width}"), other.paths.astype(f"S{width}")])
        return FileImageSet(self.root, paths, torch.cat([self.labels, other.labels]), self.size, self.loader)

    @property
    def decoded_bytes(self) -> int:
        return len(self) * 3 * self.size * self.size

    @property
    def listing_bytes(self) -> int:
        """The bytes the listing itself holds (paths and labels)."""
        return int(self.paths.nbytes + self.labels.numel() * self.labels.element_size())

    def cached(self, budget_bytes: int) -> ImageSet:
        if self.decoded_bytes > budget_bytes:
            return self
        images, labels = self.take(np.arange(len(self)))
        return TensorImageSet(images, labels)


def with_loader(images: ImageSet, loader: LoaderSettings) -> ImageSet:
    """``images`` decoding with ``loader`` (in-memory sets are returned as they are)."""
    return images.with_loader(loader) if isinstance(images, FileImageSet) else images


__all__ = ["FileImageSet", "ImageSet", "LoaderKind", "LoaderSettings", "TensorImageSet", "default_loader_workers", "with_loader",
]
