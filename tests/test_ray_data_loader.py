"""``data.loader: ray_data``: Ray Data decode tasks give exactly the torch DataLoader's batches.

On a generated ILSVRC folder (``pipeline.data.synthetic_folder``) with a local Ray: identical
batches for the same orders (a seeded shuffle over 2 ranks, chunked), the truncated file dropped
and warned once, a clear error without Ray, and (a simulated 2-node cluster) decode tasks running
on a node other than the consumer's.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

from pipeline.config import DataConfig
from pipeline.data import FileImageSet, StreamedSplits, load_splits, load_splits_from_config
from pipeline.data.batching import batch_order
from pipeline.data.ray_loader import ray_data_batches
from pipeline.data.synthetic_folder import make_ilsvrc_folder
from pipeline.errors import DataError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    return make_ilsvrc_folder(tmp_path_factory.mktemp("messy") / "ilsvrc", classes=3, train_images=40,
                              val_images=6, size=(48, 40), seed=0, messy=True)


def _sets(root) -> tuple[FileImageSet, FileImageSet]:
    """The whole training listing decoded by the torch loader and by the ray_data loader."""
    torch_splits = load_splits("imagenet", str(root), image_size=32, loader_workers=0)
    ray_splits = load_splits("imagenet", str(root), image_size=32, loader_workers=0, loader_kind="ray_data")
    assert isinstance(torch_splits, StreamedSplits) and isinstance(ray_splits, StreamedSplits)
    assert ray_splits.train.loader.kind == "ray_data"
    return torch_splits.train.concat(torch_splits.val), ray_splits.train.concat(ray_splits.val)


def _undecodable_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]


def test_config_threads_the_loader_kind_into_the_splits(messy):
    config = DataConfig(dataset="imagenet", path=str(messy.root), loader="ray_data", ray_data_cpus_per_task=0.5,
                        loader_workers=0)
    splits = load_splits_from_config(config)  # loading decodes nothing through Ray
    assert isinstance(splits, StreamedSplits)
    assert splits.train.loader.kind == "ray_data" and splits.train.loader.cpus_per_task == 0.5
    assert splits.for_device("cpu").val.loader.kind == "ray_data"
    assert DataConfig().loader == "torch"


def test_ray_data_without_ray_is_a_clear_error(messy):
    import ray

    assert not ray.is_initialized()
    _, ray_set = _sets(messy.root)
    with pytest.raises(DataError, match="data.loader: ray_data .*needs Ray initialised"):
        next(ray_set.batches(8))


def test_ray_data_batches_equal_the_torch_loaders(messy, ray_local, caplog):
    torch_set, ray_set = _sets(messy.root)
    ranks = [list(batch_order(len(torch_set), 6, shuffle=True, generator=torch.Generator().manual_seed(3),
                              rank=rank, world_size=2)) for rank in (0, 1)]
    # rank 0 straight through ray_data_batches, in chunks of 2 batches (several Ray Data datasets)
    got = list(ray_data_batches(ray_set.root, ray_set.paths, ray_set.labels.numpy(), 32, iter(ranks[0]), chunk=2))
    bad = [ray_set.path(position) for _, _, skipped in got for position in skipped]
    assert len(got) == len(ranks[0])
    for (image, label, _), (ref_image, ref_label) in zip(got, torch_set.batches_from(ranks[0])):
        assert image.dtype == torch.uint8 and label.dtype == torch.int64
        assert torch.equal(image, ref_image) and torch.equal(label, ref_label)
    # rank 1 through the set (FileImageSet with LoaderSettings(kind="ray_data"))
    expected = list(torch_set.batches_from(ranks[1]))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        through_set = list(ray_set.batches_from(ranks[1]))
    assert len(through_set) == len(expected) == len(ranks[1])
    for (image, label), (ref_image, ref_label) in zip(through_set, expected):
        assert torch.equal(image, ref_image) and torch.equal(label, ref_label)
    truncated = [i for order in ranks[1] for i in order.tolist() if ray_set.path(i).endswith("_truncated.JPEG")]
    assert len(_undecodable_lines(caplog)) == len(truncated)
    assert bad == [p for p in bad if p.endswith("_truncated.JPEG")]
    assert len(bad) + len(truncated) == 1  # the one truncated file is in exactly one rank's share


def test_truncated_file_is_dropped_from_its_batch_and_warned_once(messy, ray_local, caplog):
    torch_set, ray_set = _sets(messy.root)
    with caplog.at_level(logging.WARNING):
        (images, labels), = list(ray_set.batches(len(ray_set)))
    assert images.shape == (len(ray_set) - 1, 3, 32, 32) and labels.shape[0] == len(ray_set) - 1
    lines = _undecodable_lines(caplog)
    assert len(lines) == 1 and "skipped 1 " in lines[0] and "_truncated.JPEG" in lines[0], lines
    ref_images, ref_labels = torch_set.take(torch.arange(len(torch_set)))
    assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)
    # an in-process take through ray_data too
    taken = replace(ray_set.loader, cpus_per_task=0.5)
    assert torch.equal(ray_set.with_loader(taken).take([0, 1, 2])[0], torch_set.take([0, 1, 2])[0])


@pytest.mark.slow
def test_decode_tasks_run_on_another_node(messy, ray_local):
    """A head without CPUs for decoding and one worker node with 1 CPU: the decode tasks land there."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # this module's local Ray gives way to a simulated 2-node cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, namespace="ray-data-loader-test")
        _, ray_set = _sets(messy.root)
        node = ray.get_runtime_context().get_node_id()
        assert node == cluster.head_node.node_id
        orders = list(batch_order(len(ray_set), 8))[:3]
        nodes: list[str] = []
        batches = list(ray_data_batches(ray_set.root, ray_set.paths, ray_set.labels.numpy(), 32, orders, nodes=nodes))
        assert len(batches) == 3 and all(images.shape[0] == labels.shape[0] > 0 for images, labels, _ in batches)
        assert nodes == [worker.node_id] * 3
    finally:
        ray.shutdown()
        cluster.shutdown()
