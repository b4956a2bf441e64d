"""Latency actors run only on the nodes their hardware profile selects (multi-node Cluster on 127.0.0.1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import load_config
from pipeline.evaluate.interface import Objective
from pipeline.space.ofav2 import OFAv2Space

TINY = {"stage_widths": (8, 8, 16, 16, 24), "resolutions": (16, 20, 24)}
PROFILES = (
    "evaluate.profiles=["
    "{name: x86_node, placement: {labels: {hw: x86_test}}, threads: 1, warmup: 1, repeats: 3},"
    "{name: arm_node, placement: {resources: {latency_arm_test: 1}}, threads: 1, warmup: 1, repeats: 3, num_cpus: 0}"
    "]"
)


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    x86 = cluster.add_node(num_cpus=1, labels={"hw": "x86_test"})
    arm = cluster.add_node(num_cpus=1, resources={"latency_arm_test": 1})
    ray.init(address=cluster.address, namespace="placement-test")
    yield {"head": cluster.head_node.node_id, "x86_node": x86.node_id, "arm_node": arm.node_id}
    ray.shutdown()
    cluster.shutdown()


def test_latency_work_runs_only_on_each_profiles_node(cluster, tmp_path):
    import ray

    from pipeline.evaluate.ofav2_evaluator import OFAv2ActorEvaluator
    from pipeline.evaluate.recording import evaluate_into
    from pipeline.schema import read_parquet
    from pipeline.search.archive import ArchiveActorSink, start_archive
    from pipeline.supernet import OFAv2Supernet
    from pipeline.supernet.checkpoint import save_supernet

    torch.set_num_threads(1)
    space = OFAv2Space(**TINY)
    (tmp_path / "supernet").mkdir()
    save_supernet(tmp_path / "supernet" / "supernet.pt", OFAv2Supernet(space, 4))
    config = load_config(None, [
        "data.dataset=synthetic", "data.synthetic_images=80", "data.synthetic_classes=4",
        "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20,24]",
        "evaluate.num_evaluators=1", "evaluate.evaluator_num_cpus=1", "evaluate.calibration_images=16",
        PROFILES,
    ])
    objectives = [Objective("top1", "max"), Objective("latency_ms@x86_node", "min")]
    archive = start_archive(tmp_path, "placement", "ofav2", objectives)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(3)]
    with OFAv2ActorEvaluator(config, tmp_path, archive=archive) as evaluator:
        results = evaluate_into(evaluator, ArchiveActorSink(archive), archs, run_id="placement")
        assert all(r.status == "ok" for r in results), [r.error for r in results]
        for result in results:
            assert evaluator.placements[(result.arch_id, "x86_node")] == cluster["x86_node"]
            assert evaluator.placements[(result.arch_id, "arm_node")] == cluster["arm_node"]
        for profile in ("x86_node", "arm_node"):
            actor_nodes = {ray.get(actor.ping.remote()) for actor in evaluator.pools[profile].actors}
            assert actor_nodes == {cluster[profile]}
    frame = read_parquet(tmp_path / "archive.parquet")
    assert frame[["latency_ms@x86_node", "latency_ms@arm_node"]].notna().all().all()
    ray.kill(archive, no_restart=True)
