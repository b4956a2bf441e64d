"""Mini-batches over in-memory tensors, and the per-batch choice of an elastic resolution.

- ``batch_order`` is the one rule for a pass's index lists; ``iterate_batches`` yields ``(images_uint8, labels)`` slices. Shuffling draws only from the
  ``torch.Generator`` passed in. For data-parallel training, ``rank``/``world_size`` give every
  rank a disjoint, equally long share of one permutation (all ranks must pass generators in the
  same state), so every rank runs the same number of steps.
- ``choose_resolution`` / ``ElasticResolutionSampler`` pick one resolution per batch from the
  allowed list; ranks seeded alike pick alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch


def num_batches(num_items: int, batch_size: int, drop_last: bool = False, world_size: int = 1) -> int:
    """How many batches ``iterate_batches`` yields per rank for these settings."""
    per_rank = num_items // world_size if world_size > 1 else num_items
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


def batch_order(
    count: int,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[torch.Tensor]:
    """The index lists (CPU int64 tensors) of one pass over ``count`` items, batch by batch.

    The one rule for the order of a pass: in-memory batches (``iterate_batches``) and streamed
    ones (``pipeline.data.imageset.FileImageSet``) both index with it, so the same generator state,
    rank and world size give the same batches. The permutation is drawn at the first ``next``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")
    if shuffle and generator is None:
        raise ValueError("shuffle=True needs a torch.Generator (the global RNG is never used)")
    return _pass_order(count, batch_size, generator if shuffle else None, drop_last, rank, world_size)


def _pass_order(count: int, batch_size: int, generator: torch.Generator | None, drop_last: bool, rank: int,
                world_size: int) -> Iterator[torch.Tensor]:
    """``batch_order`` after its checks (a generator: the permutation is drawn at the first ``next``)."""
    if generator is not None:
        order = torch.randperm(count, generator=generator, device=generator.device).cpu()
    else:
        order = torch.arange(count)
    if world_size > 1:
        order = order[: (count // world_size) * world_size][rank::world_size]
    total = order.shape[0]
    stop = (total // batch_size) * batch_size if drop_last else total
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def iterate_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images[batch], labels[batch])`` in order or in a seeded random order (``batch_order``)."""
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    return index_batches(images, labels, batch_order(images.shape[0], batch_size, shuffle, generator,
                                                     drop_last, rank, world_size))


def index_batches(images: torch.Tensor, labels: torch.Tensor,
                  orders: Iterable[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images[index], labels[index])`` for every index list of ``orders``."""
    for index in orders:
        yield images[index.to(images.device)], labels[index.to(labels.device)]


def choose_resolution(resolutions: Sequence[int], generator: torch.Generator) -> int:
    """One resolution drawn uniformly from ``resolutions`` with ``generator``."""
    if not resolutions:
        raise ValueError("the list of resolutions is empty")
    pick = torch.randint(len(resolutions), (1,), generator=generator, device=generator.device)
    return int(resolutions[int(pick.item())])


class ElasticResolutionSampler:
    """Draws one resolution per batch from a fixed list; iterate it or call ``next_resolution``."""

    def __init__(self, resolutions: Sequence[int], generator: torch.Generator) -> None:
        if not resolutions or min(resolutions) < 1:
            raise ValueError(f"resolutions must be a non-empty list of positive ints, got {list(resolutions)}")
        self.resolutions = tuple(int(r) for r in resolutions)
        self.generator = generator

    def next_resolution(self) -> int:
        return choose_resolution(self.resolutions, self.generator)

    def __iter__(self) -> Iterator[int]:
        while True:
            yield self.next_resolution()
