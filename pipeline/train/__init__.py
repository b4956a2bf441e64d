"""Supernet training: OFAv2 progressive shrinking on Ray Train.

- ``schedule``: the phase plan (full, kernel, level, height, depth, expand), the lr schedule and
  the random streams derived from (seed, position) (subnet sampling itself is the space's:
  ``pipeline.space.ofav2.sample_arch``);
- ``optim``: parameter groups (no decay on BN/bias) and progressive shrinking's SGD;
- ``workers``: the ``TorchTrainer`` for a worker loop and torch's per-worker thread count;
- ``evaluation``: BN-recalibrated subnet evaluation and the one top-1 count;
- ``losses``: CE, KD, ENS-KD, multi-exit and Cream losses;
- ``teacher``: fixed and dynamic (progressively extracted) teachers;
- ``cream``: prioritized path board, meta network, and Cream's answer into the archive;
- ``steps``: one optimiser step over k subnets; ``loop``: the Ray Train worker loop;
- ``state``: checkpoint contents; ``publish``: supernet file and metrics Parquet;
- ``driver``: ``train_supernet`` (``TorchTrainer``, resume, failures);
- ``adapt``: the short search-time fine-tune of the published supernet (NATv2's adaptation);
- ``finetune``: post-processing fine-tuning of chosen subnets on Ray Tune (the deployed ONNX is
  the chosen exit only); ``choices``: which architectures are fine-tuned.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig


def train_supernet(config: PipelineConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train the supernet of ``config`` into ``run_dir``; see ``pipeline.train.driver``.

    Imported lazily so that ``pipeline.train.losses`` and friends load without Ray Train.
    """
    from pipeline.train.driver import train_supernet as run

    return run(config, run_dir, resume)


__all__ = ["train_supernet"]
