"""Decoding streamed batches with Ray Data, so decode tasks can run on other (CPU-only) nodes.

``ray_data_batches(root, paths, labels, size, orders, cpus_per_task)`` is the ``data.loader:
ray_data`` implementation of ``FileImageSet.batches_from``: it takes the (possibly endless)
stream of index lists ``CHUNK_BATCHES`` at a time (so memory stays flat), makes a
``ray.data.from_items`` dataset with one row per training batch (its relative paths, labels and
positions), and ``map_batches(decode_rows, batch_size=1)`` decodes each whole batch with the same
``decode_image`` as the DataLoader path, so the uint8 images are identical. Results come back in
order (``preserve_order`` on the dataset's own context, never the process-wide one) as
``(uint8 N x 3 x S x S, int64 labels, positions of undecodable files)``.

Decoded images cross the object store once per batch, which costs more than a DataLoader's shared
memory on one node: torch stays the default, Ray Data is for decoding beside a GPU node.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from pipeline.data.decode import decode_image
from pipeline.errors import DataError

#: training batches per Ray Data dataset: enough to keep the decode tasks busy, few enough that at
#: most this many decoded batches are held at once
CHUNK_BATCHES = 32

LoadedBatch = tuple[torch.Tensor, torch.Tensor, list[int]]


def require_ray() -> None:
    """Refuse ``data.loader: ray_data`` outside a Ray job (Ray Data needs a running Ray)."""
    import ray

    if not ray.is_initialized():
        raise DataError("data.loader: ray_data decodes in Ray Data tasks and needs Ray initialised "
                        "(ray.init or a Ray job); use data.loader: torch for in-process decoding")


def decode_rows(batch: dict[str, np.ndarray], root: str, size: int) -> dict[str, np.ndarray]:
    """One row (one training batch) decoded: its images' bytes (N x S x S x 3 uint8, the decodable
    files only), their int64 labels' bytes, the int64 positions of the undecodable files, and the
    id of the node that decoded it."""
    import ray

    paths, labels, index = batch["paths"][0], batch["labels"][0], batch["index"][0]
    decoded = [decode_image(os.path.join(root, path), size) for path in paths]
    good = [image for image in decoded if image is not None]
    images = np.stack(good) if good else np.empty((0, size, size, 3), dtype=np.uint8)
    kept = np.asarray([label for label, image in zip(labels, decoded) if image is not None], dtype=np.int64)
    bad = np.asarray([position for position, image in zip(index, decoded) if image is None], dtype=np.int64)
    return {"images": np.array([images.tobytes()], dtype=object),
            "labels": np.array([kept.tobytes()], dtype=object),
            "bad": np.array([bad.tobytes()], dtype=object),
            "node": np.array([ray.get_runtime_context().get_node_id()], dtype=object)}


def _unpack(row: dict[str, Any], size: int) -> LoadedBatch:
    """A ``decode_rows`` result as the torch path's tensors (uint8 N x 3 x S x S, int64 labels)."""
    labels = torch.from_numpy(np.frombuffer(row["labels"], dtype=np.int64).copy())
    pixels = np.frombuffer(row["images"], dtype=np.uint8).reshape(labels.shape[0], size, size, 3)
    images = torch.from_numpy(pixels.copy()).permute(0, 3, 1, 2).contiguous()
    return images, labels, np.frombuffer(row["bad"], dtype=np.int64).tolist()


def _rows(paths: np.ndarray, labels: np.ndarray, orders: list[torch.Tensor]) -> list[dict[str, Any]]:
    """One item per training batch: relative paths (str), labels and positions in the listing."""
    rows = []
    for order in orders:
        index = order.numpy() if isinstance(order, torch.Tensor) else np.asarray(order, dtype=np.int64)
        rows.append({"paths": [path.decode() for path in paths[index]], "labels": labels[index].tolist(),
                     "index": index.tolist()})
    return rows


def ray_data_batches(root: str, paths: np.ndarray, labels: np.ndarray, size: int, orders: Iterable[torch.Tensor],
                     cpus_per_task: float = 1.0, chunk: int = CHUNK_BATCHES,
                     nodes: list[str] | None = None) -> Iterator[LoadedBatch]:
    """``(images, labels, undecodable positions)`` for every index list of ``orders``, in order,
    decoded by Ray Data tasks of ``cpus_per_task`` CPUs on whichever nodes have them; ``nodes``,
    when given, gets the id of the node that decoded each batch appended (for benchmarks, tests)."""
    import ray.data

    require_ray()
    stream = iter(orders)
    while chunk_orders := list(itertools.islice(stream, chunk)):
        items = _rows(paths, labels, chunk_orders)
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        dataset = dataset.map_batches(decode_rows, batch_size=1, batch_format="numpy", num_cpus=cpus_per_task,
                                      fn_kwargs={"root": root, "size": size})
        dataset.context.execution_options.preserve_order = True
        dataset.context.enable_progress_bars = False
        for row in dataset.iter_rows():
            if nodes is not None:
                nodes.append(str(row["node"]))
            yield _unpack(row, size)


__all__ = ["CHUNK_BATCHES", "decode_rows", "ray_data_batches", "require_ray"]
