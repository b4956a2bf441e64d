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
  the chosen exit only; which subnets is the stage layer's choice, ``pipeline.finetune_choices``);
- ``files``: the names of what training and fine-tuning write into the run directory;
- ``progress``: one line per epoch or trial, through the reporter the caller passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig
    from pipeline.train.progress import Progress


def train_supernet(config: PipelineConfig, run_dir: Path, resume: bool = False,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Train the supernet of ``config`` into ``run_dir``; see ``pipeline.train.driver``.

    Imported lazily so that ``pipeline.train.losses`` and friends load without Ray Train.
    """
    from pipeline.train.driver import train_supernet as run

    return run(config, run_dir, resume) if progress is None else run(config, run_dir, resume, progress)


__all__ = ["train_supernet"]
