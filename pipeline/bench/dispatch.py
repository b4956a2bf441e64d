"""Dispatch overhead: no-op candidates over one actor per (simulated) node, rows streamed to the archive.

``simulated_cluster`` starts a ``ray.cluster_utils.Cluster`` of ``nodes`` nodes (one logical CPU
each unless told otherwise), each with its own ``bench_node_<i>`` resource, and connects to it
(shut down on exit); attached to a real cluster (``RAY_ADDRESS`` set) it starts nothing and the
cluster's own nodes are used.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def simulated_cluster(nodes: int, namespace: str, cpus_per_node: int = 1) -> Iterator[bool]:
    """Yields True when a simulated cluster was started (and is torn down on exit)."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        yield False
        return
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": cpus_per_node, "resources": {"bench_node_0": 1}, "include_dashboard": False})
    try:
        for index in range(1, nodes):
            cluster.add_node(num_cpus=cpus_per_node, resources={f"bench_node_{index}": 1})
        ray.init(address=cluster.address, namespace=namespace)
        try:
            yield True
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()


def dispatch_overhead(work: Path, nodes: int, candidates: int, namespace: str, repeats: int = 5) -> tuple[float, str]:
    """Wall milliseconds per no-op candidate over one actor per node, rows streamed in batches of 50.

    One uncounted pass warms the actors and the archive up; the figure is the median of ``repeats``
    timed passes of ``candidates`` fresh candidates each, with the spread in the detail."""
    import ray

    from pipeline.evaluate.actors import NoOpWorker
    from pipeline.evaluate.dispatch import Dispatcher, WorkerPool, WorkItem
    from pipeline.evaluate.interface import Objective
    from pipeline.search.archive import start_archive

    with simulated_cluster(nodes, namespace) as simulated:
        archive = start_archive(work / "dispatch", "bench", "ofav2", [Objective("top1", "max")],
                                name="bench-archive-dispatch")
        remote = ray.remote(NoOpWorker)
        if simulated:
            factories = [lambda i=i: remote.options(num_cpus=0, resources={f"bench_node_{i}": 0.01}).remote()
                         for i in range(nodes)]
        else:
            factories = [lambda: remote.options(num_cpus=0, scheduling_strategy="SPREAD").remote()] * nodes
        pools = [WorkerPool(f"node{i}", factory, 1) for i, factory in enumerate(factories)]
        for pool in pools:
            ray.get(pool.actors[0].ping.remote())
        dispatcher = Dispatcher(pools)

        def one_pass(prefix: str, count: int) -> float:
            keys = [f"{prefix}{i:05d}" for i in range(count)]
            items = [WorkItem(key, f"node{i % nodes}", {"arch_id": key, "top1": 0.0}) for i, key in enumerate(keys)]
            acks, buffer = [], []

            def stream(outcomes) -> None:
                buffer.extend(o.value for o in outcomes)
                while len(buffer) >= 50:
                    acks.append(archive.upsert.remote(buffer[:50]))
                    del buffer[:50]

            start = time.perf_counter()
            outcomes = dispatcher.run(items, on_outcomes=stream)
            if buffer:
                acks.append(archive.upsert.remote(list(buffer)))
            ray.get(acks)
            elapsed = time.perf_counter() - start
            assert all(o.status == "ok" for o in outcomes.values())
            return elapsed

        one_pass("warm", max(nodes * 10, candidates // 10))
        seconds = [one_pass(f"p{index}c", candidates) for index in range(repeats)]
        stored = ray.get(archive.size.remote())
        node_ids = {ray.get(pool.actors[0].ping.remote()) for pool in pools}
        dispatcher.shutdown()
        ray.kill(archive, no_restart=True)
    assert stored == max(nodes * 10, candidates // 10) + repeats * candidates  # every row reached the archive
    per_candidate = [1000.0 * elapsed / candidates for elapsed in seconds]
    return statistics.median(per_candidate), (
        f"median of {repeats} passes of {candidates} candidates (spread {min(per_candidate):.2f}-"
        f"{max(per_candidate):.2f} ms), {len(node_ids)} nodes")
