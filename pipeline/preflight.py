"""Checks the driver runs before Ray starts, so that bad input is one line at once.

Everything a Ray Train worker, an evaluator actor or a Tune trial would otherwise find out minutes
later (after Ray has started, with a wall of frames) is checked here first, with the same code the
workers run: the data path's listing (``pipeline.data.check_data``), the supernet checkpoint a
stage reads (readable, of this project, of the configured space), the search objectives and
profiles, the generate stage's budgets, and a precision the stage's device cannot run (fp16 for a
fine-tuning on CPU). Each check raises the ``PipelineError`` the worker
would have raised.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.errors import CheckpointError, ConfigError
from pipeline.run_dir import RunDir

_log = logging.getLogger(__name__)

#: stages that read the training data (the search and generate stages measure top-1 on it)
DATA_STAGES = frozenset({"train", "search", "generate", "finetune"})
#: stages that read the trained supernet
SUPERNET_STAGES = frozenset({"search", "generate", "finetune"})


def check_supernet_checkpoint(path: str | Path, config: PipelineConfig | None = None) -> None:
    """Raise a ``CheckpointError`` unless ``path`` is a readable supernet of ``config``'s space."""
    from pipeline.supernet.builder import build_space
    from pipeline.supernet.checkpoint import load_supernet

    net, _ = load_supernet(path)
    if config is None:
        return
    stored = json.loads(json.dumps(net.space.options()))
    wanted = json.loads(json.dumps(build_space(config.supernet).options()))
    differing = [key for key in wanted if stored.get(key) != wanted[key]]
    if differing:
        key = differing[0]
        raise CheckpointError(f"supernet checkpoint {path} was trained for another space: supernet.{key} is "
                              f"{stored.get(key)!r} there but {wanted[key]!r} in the config")


def warn_small_decode_size(config: PipelineConfig) -> None:
    """One warning when image files are decoded smaller than the largest resolution needs.

    Files (``folder``, ``imagenet``) are decoded to ``data.image_size`` squares; the training crop
    and the evaluation resize (``resolution / 0.875`` for ImageNet, OFA's rule) start from those,
    so a decode size below what the largest resolution needs upsamples every image."""
    if config.data.dataset not in ("folder", "imagenet"):
        return
    from pipeline.data.streamed import IMAGENET_EVAL_CROP

    crop = IMAGENET_EVAL_CROP if config.data.dataset == "imagenet" else 1.0
    needed = math.ceil(max(config.supernet.resolutions) / crop)
    if config.data.image_size < needed:
        _log.warning(f"warning: data.image_size is {config.data.image_size} but the largest resolution "
                     f"{max(config.supernet.resolutions)} needs {needed} px; every image is upsampled "
                     f"(set data.image_size: {needed})")


def check_pipeline_inputs(config: PipelineConfig, stages: Sequence[str], run_dir: Path | None = None,
                          resume: bool = False) -> None:
    """Check what ``stages`` will read, before Ray starts (see the module docstring).

    The supernet is checked only when no stage in ``stages`` trains it, or when a resumed run
    has already trained it.
    """
    from pipeline.data import check_data

    stages = list(stages)
    if DATA_STAGES.intersection(stages):
        check_data(config.data)
        warn_small_decode_size(config)
    if "train" in stages and config.train.init_from and not resume:
        from pipeline.supernet.init_from import preview

        preview(config.supernet, config.train.init_from)  # unreadable, or matching nothing
    if "finetune" in stages and config.train.precision == "fp16" and not config.finetune.use_gpu:
        raise ConfigError("config: 'train.precision': fp16 needs a GPU and fine-tuning runs on CPU "
                          "(finetune.use_gpu is false); use bf16, or set finetune.use_gpu: true")
    if "search" in stages:
        from pipeline.evaluate.objectives import ofav2_objectives

        ofav2_objectives(config)  # unknown objectives or profiles
    if "generate" in stages:
        from pipeline.generate.run_stage import check_generate_settings

        check_generate_settings(config)
    if run_dir is None or not SUPERNET_STAGES.intersection(stages):
        return
    if "train" in stages and not (resume and "train" in RunDir(run_dir).completed_stages()):
        return  # this job trains the supernet first
    own = RunDir(run_dir).supernet
    checkpoints = []
    if "search" in stages:  # the search may read another run's supernet (evaluate.checkpoint)
        checkpoints.append(Path(config.evaluate.checkpoint) if config.evaluate.checkpoint else own)
    if {"generate", "finetune"}.intersection(stages):
        checkpoints.append(own)
    for checkpoint in dict.fromkeys(checkpoints):
        check_supernet_checkpoint(checkpoint, config)
