"""Supernet adaptation between search iterations (NAT's step 5, NATv2's step 7).

``adapt_supernet(config, run_dir, archs)`` fine-tunes the published supernet
(``RUN_DIR/supernet/supernet.pt``) for ``search.adaptation.epochs`` epochs on the training split,
each step drawing ``search.adaptation.subnets_per_step`` architectures from ``archs`` (the search
archive's best) and summing their gradients (``steps.train_step``). With a distillation mode other
than ``none`` the teacher is the current supernet's maximal subnet (all exits for early-exit
supernets), recalibrated and frozen: a dynamic teacher, as in training. The learning rate follows
a cosine from ``search.adaptation.lr`` (scaled like training's by the global batch / 64).

It runs on Ray Train's ``TorchTrainer`` with ``search.adaptation.num_workers`` workers (gloo on CPU,
NCCL with ``train.use_gpu``); 0 runs in the driver's process, which needs no free CPU while the
evaluator pools hold theirs. Rank 0 then publishes the new weights atomically with
``extra["adaptation_round"]`` one higher than before, keeping the trained supernet as
``supernet/trained.pt`` on the first round. Evaluator actors reload a changed checkpoint before
their next candidate, and the evaluator treats accuracies measured under an older round as stale.

Randomness comes from generators derived from (seed, round, step), so a run is repeatable.
The forward passes follow ``train.precision`` as in training (``pipeline.supernet.precision``).
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import PipelineConfig
from pipeline.data import calibration_subset, load_splits_from_config, train_transform
from pipeline.space.base import Architecture
from pipeline.supernet.checkpoint import ADAPTATION_ROUND_KEY, adaptation_round, load_supernet, save_supernet
from pipeline.supernet.precision import ForwardPrecision
from pipeline.train.distributed import WorkerInfo, allreduce_mean, average_batchnorm_buffers, broadcast_parameters
from pipeline.train.evaluation import DataView
from pipeline.train.files import TrainFiles
from pipeline.train.loop import endless_batches
from pipeline.train.optim import make_optimizer
from pipeline.train.schedule import cosine_lr, derive_seed, numpy_generator, torch_generator
from pipeline.train.steps import StepContext, train_step
from pipeline.train.teacher import build_teacher
from pipeline.train.workers import fit_trainer, torch_threads, torch_trainer

_log = logging.getLogger(__name__)


def adaptation_loop(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train's entry point on every worker (see the module docstring)."""
    config = PipelineConfig.model_validate(loop_config["config"])
    with torch_threads(config.train.threads_per_worker):
        return _adapt_on_worker(loop_config, config)


def _adapt_on_worker(loop_config: dict[str, Any], config: PipelineConfig) -> dict[str, Any]:
    """One worker's adaptation round: train, average BN, rank 0 republishes; the round's metrics."""
    import ray.train

    adaptation, train = config.search.adaptation, config.train
    context = ray.train.get_context()
    device = ray.train.torch.get_device() if train.use_gpu else torch.device("cpu")
    info = WorkerInfo(context.get_world_rank(), context.get_world_size(), device)
    seed, round_index = config.run.seed, int(loop_config["round"])
    path = TrainFiles(loop_config["run_dir"]).supernet
    net, extra = load_supernet(path, map_location=device)
    precision = ForwardPrecision.on(train.precision, device)
    precision.prepare_model(net)
    broadcast_parameters(net, info)
    splits = load_splits_from_config(config.data, seed).for_device(device)
    archs: list[Architecture] = loop_config["archs"]
    teacher = None
    if train.distillation != "none":
        view = DataView(splits.mean, splits.std, calibration_subset(splits, train.calibration_images, seed),
                        splits.val.head(0), train.calibration_batch_size, device, splits.eval_crop)
        teacher = precision.prepare_model(build_teacher(net.state_dict(), net.space, splits.num_classes, view))
    ctx = StepContext(net, make_optimizer(net, config), train, info, teacher, precision=precision,
                      scaler=precision.grad_scaler())
    batch = config.data.batch_size
    steps_per_epoch = adaptation.steps_per_epoch or max(1, len(splits.train) // (batch * info.world_size))
    steps = adaptation.epochs * steps_per_epoch
    base_lr = adaptation.lr * (batch * info.world_size / 64.0 if train.lr_scaling == "linear" else 1.0)
    losses: list[float] = []
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(seed, 40, round_index, info.rank))
        batches = endless_batches(splits, batch, info, seed, 43, round_index)
        for step in range(steps):
            images_u8, labels = next(batches)
            rng = numpy_generator(seed, 41, round_index, step)
            chosen = [archs[int(i)] for i in rng.integers(0, len(archs), adaptation.subnets_per_step)]
            resolution = int(chosen[0]["resolution"])
            images = precision.prepare_batch(train_transform(
                images_u8.to(device), splits.mean, splits.std, resolution,
                torch_generator(seed, 42, round_index, step, info.rank)))
            losses.append(train_step(ctx, chosen, images, labels.to(device), cosine_lr(step, steps, base_lr),
                                     full_phase=False, use_board=False, meta_step=False))
    average_batchnorm_buffers(net, info)
    mean_loss = torch.tensor([float(np.mean(losses))], device=device)
    allreduce_mean([mean_loss], info)
    if info.is_main:
        trained = TrainFiles(loop_config["run_dir"]).trained_supernet
        if not trained.exists():
            shutil.copy2(path, trained)
        save_supernet(path, net, extra={**extra, ADAPTATION_ROUND_KEY: round_index})
    metrics = {"adaptation_round": round_index, "loss": float(mean_loss.item()), "steps": steps,
               "archs": len(archs), "seconds": time.perf_counter() - started}
    ray.train.report(metrics)
    return metrics


def adapt_supernet(config: PipelineConfig, run_dir: str | Path, archs: list[Architecture],
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune and republish the run's supernet on ``archs`` (see the module docstring)."""
    from ray.train import RunConfig

    log = log or _log.info

    run_dir = Path(run_dir).resolve()
    _, extra = load_supernet(TrainFiles(run_dir).supernet)
    round_index = adaptation_round(extra) + 1
    adaptation, train = config.search.adaptation, config.train
    log(f"[adapt] round {round_index}: fine-tuning the supernet on {len(archs)} archive architectures "
        f"for {adaptation.epochs} epoch(s)")
    loop_config = {"config": config.model_dump(mode="json"), "run_dir": str(run_dir), "round": round_index,
                   "archs": [dict(a) for a in archs]}
    trainer = torch_trainer(adaptation_loop, loop_config, train, adaptation.num_workers, RunConfig(
        name=f"{config.run.name}-adapt{round_index}-{uuid.uuid4().hex[:8]}",
        storage_path=str(TrainFiles(run_dir).train_storage)))
    metrics = dict(fit_trainer(trainer).metrics or {})
    log(f"[adapt] round {round_index}: loss {metrics.get('loss', float('nan')):.3f}; supernet republished")
    return metrics
