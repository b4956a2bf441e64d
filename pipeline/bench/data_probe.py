"""One measurement of the streamed-data benchmark in a fresh process; prints one JSON line.

    python -m pipeline.bench.data_probe train|evaluator|scaling --path FOLDER --stream on|off ...

- ``train``: a training worker's data path (the ImageNet loader, ``train_transform`` at the
  decode size) and an SGD step of a small supernet per batch, for ``--steps`` batches;
- ``evaluator``: the real ``AccuracyWorker`` on a fresh supernet checkpoint, scoring one
  architecture (BN recalibration on its calibration subset, top-1 on its validation subset);
- ``scaling``: Ray Data decoding on a simulated cluster, ``--nodes`` CPU-only nodes beside a head
  node with no CPUs for tasks (the trainer's node); images per second received by this process.

Peak memory is ``getrusage``'s maximum resident set size: this process's own, and that of the
largest DataLoader worker it started (``RUSAGE_CHILDREN``, read after the workers exited).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: the supernet both memory probes use (the demo's widths), at the probe's decode size
PROBE_SPACE = {"early_exits": False, "dense_skips": False, "stage_widths": [16, 24, 32, 48, 64]}


def _peaks() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {"peak_rss_mib": own, "worker_peak_rss_mib": children}


def _data_config(args: argparse.Namespace) -> Any:
    from pipeline.config import DataConfig

    return DataConfig(dataset="imagenet", path=args.path, image_size=args.image_size, stream=args.stream,
                      loader_workers=args.workers, batch_size=args.batch)


def train_probe(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.data import load_splits_from_config, train_transform
    from pipeline.supernet.builder import build_supernet

    torch.set_num_threads(1)
    data = _data_config(args)
    splits = load_splits_from_config(data, seed=0)
    net = build_supernet({**PROBE_SPACE, "resolutions": [args.image_size]}, splits.num_classes, seed=0).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)
    batches = splits.train.batches(args.batch, shuffle=True, generator=torch.Generator().manual_seed(1),
                                   drop_last=True)
    seen = 0
    for _, (images, labels) in zip(range(args.steps), batches):
        net.set_active(net.space.sample(rng))
        x = train_transform(images, splits.mean, splits.std, args.image_size, generator)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), labels).backward()
        optimizer.step()
        seen += images.shape[0]
    batches.close()  # the DataLoader's workers exit, so their peak is counted
    return {"images_seen": seen, "train_images": len(splits.train), "workers": args.workers, **_peaks()}


def evaluator_probe(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline.config import EvaluateConfig
    from pipeline.data.streamed import imagenet_listing
    from pipeline.evaluate.actors import AccuracyWorker
    from pipeline.supernet.builder import build_supernet
    from pipeline.supernet.checkpoint import save_supernet

    wnids, _, _ = imagenet_listing(args.path)
    space = {**PROBE_SPACE, "resolutions": [args.image_size]}
    checkpoint = Path(args.workdir) / f"probe_supernet_{len(wnids)}_{args.image_size}.pt"
    if not checkpoint.is_file():
        save_supernet(checkpoint, build_supernet(space, len(wnids), seed=0))
    settings = EvaluateConfig(calibration_images=args.calibration_images, val_images=args.val_images,
                              threads_per_evaluator=1)
    worker = AccuracyWorker(str(checkpoint), _data_config(args).model_dump(mode="json"), 0,
                            settings.model_dump(mode="json"))
    arch = worker.net.space.sample(np.random.default_rng(0))
    started = time.perf_counter()
    metrics = worker.run(arch)["metrics"]
    return {"candidate_s": time.perf_counter() - started, "top1": metrics["top1"], "workers": 0, **_peaks()}


def scaling_probe(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.data import LoaderSettings, load_splits

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        splits = load_splits("imagenet", args.path, image_size=args.image_size, stream="on")
        train = splits.train.with_loader(LoaderSettings(kind="ray_data"))
        batches = train.batches(args.batch, shuffle=True, generator=torch.Generator().manual_seed(0),
                                drop_last=True)
        next(batches)  # start-up: the first chunk's tasks
        count, started = 0, time.perf_counter()
        for _, (images, _labels) in zip(range(args.batches), batches):
            count += images.shape[0]
        seconds = time.perf_counter() - started
        batches.close()
        nodes_used = sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) > 0)
        return {"img_s": count / seconds, "images": count, "nodes_used": nodes_used}
    finally:
        ray.shutdown()
        cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=["train", "evaluator", "scaling"])
    parser.add_argument("--path", required=True)
    parser.add_argument("--stream", choices=["on", "off"], default="on")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workdir", default=".")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader decode processes (train)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--calibration-images", type=int, default=128)
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    probes = {"train": train_probe, "evaluator": evaluator_probe, "scaling": scaling_probe}
    print(json.dumps(probes[args.role](args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
