"""The Ray Train worker loop: progressive shrinking over the plan, one checkpoint per epoch.

``train_loop_per_worker(loop_config)`` runs on every worker (or in-process when Ray Train's
``num_workers=0``). Per part it re-organises channels (expand phases), builds a fresh optimiser
(SGD Nesterov, no weight decay on BN/bias) and, at a phase start, the teacher. Per epoch it trains
``steps_per_epoch`` steps (see ``steps.train_step``), averages BN statistics across ranks, lets
rank 0 evaluate the max, min and a few sampled subnets (BN recalibrated on extracted copies;
every ``eval_interval`` epochs and at the end of every part, NaN in between; the phase's best
epoch for the dynamic teacher is chosen among evaluated epochs),
publishes ``RUN_DIR/supernet/supernet.pt`` and ``RUN_DIR/train_metrics.parquet`` (atomically), and
reports a checkpoint through ``ray.train.report``. It resumes from ``ray.train.get_checkpoint()``
(worker failure or a driver restart with the same run name) or from ``resume_from`` (in-process
mode, where Ray Train does not persist checkpoints).

Cream (``distillation: cream``): a seeded slice of ``train.cream.held_out_images`` training images
is set aside before training (never the validation split, which the search ranks on) for the
board's accuracies and the meta-gradient; the published checkpoint's ``extra["cream"]`` records
the slice (seed, training-split positions) and the board, best path first.

Randomness: data order, resolutions, subnets and augmentation come from generators derived from
(seed, position). Dropout uses torch's global generator, so each epoch runs inside
``torch.random.fork_rng`` seeded from (seed, epoch, rank); the caller's global state is restored
afterwards. A resumed run therefore repeats an uninterrupted run exactly.

Precision (``train.precision``, see ``pipeline.supernet.precision``): the steps' forward passes run
under autocast for bf16/fp16, with channels_last model and batches on CUDA and a gradient scaler
for fp16 (its scale is not checkpointed: a resumed fp16 run starts from the initial scale); the
per-epoch evaluation (BN recalibration and top-1) stays in fp32.

Data throughput: each epoch's row carries ``data_wait_s``, the time the step loop waited for its
next batch from the data stream (averaged over ranks), and ``data_wait_share``, that time as a share
of the epoch's step time (``train_s``); the driver's line shows it (``train.progress``).

Fault injection (tests only, never a config key): the environment variable ``FAULT_EPOCH_VARIABLE``
set to E in the driver's process (``train.driver`` reads it and hands it to every worker in the
loop's settings) makes the last rank die after the first step of global epoch E (``os._exit``
under Ray, a ``RuntimeError`` in-process), once per run: a marker file next to the run's
checkpoints records that it happened.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import torch

from pipeline.config import PipelineConfig
from pipeline.data import (
    Splits,
    StreamedSplits,
    TrainingHoldOut,
    calibration_subset,
    choose_resolution,
    eval_transform,
    hold_out_from_train,
    load_splits_from_config,
    num_batches,
    train_transform,
)
from pipeline.data.batching import batch_order
from pipeline.space.ofav2 import OFAv2Space, extreme_arch, sample_arch
from pipeline.supernet.builder import build_space, build_supernet
from pipeline.supernet.costs import ArchCostCounter
from pipeline.supernet.init_from import initialise_from
from pipeline.supernet.precision import ForwardPrecision
from pipeline.train.cream import CREAM_EXTRA_KEY, MetaNetwork, PrioritizedBoard, board_prior, board_record
from pipeline.train.distributed import (
    WorkerInfo,
    allreduce_mean,
    average_batchnorm_buffers,
    broadcast_object,
    broadcast_parameters,
)
from pipeline.train.evaluation import DataView, evaluate_subnet
from pipeline.train.optim import make_optimizer
from pipeline.train.publish import publish_epoch
from pipeline.train.schedule import (
    PartPlan,
    build_plan,
    derive_seed,
    lr_at,
    numpy_generator,
    torch_generator,
)
from pipeline.train.state import TrainState, load_state, save_state
from pipeline.train.steps import CreamState, StepContext, train_step, update_board
from pipeline.train.teacher import build_teacher
from pipeline.train.workers import torch_threads

LOCAL_CHECKPOINT_PREFIX = "local_checkpoint_"
#: tests set it to an epoch number to make one worker die there (see the module docstring)
FAULT_EPOCH_VARIABLE = "PIPELINE_TEST_FAIL_AT_EPOCH"


def injected_fault_epoch() -> int | None:
    """The epoch ``FAULT_EPOCH_VARIABLE`` asks a worker to die at (None: no fault)."""
    value = os.environ.get(FAULT_EPOCH_VARIABLE, "").strip()
    return int(value) if value else None


def make_space(config: PipelineConfig) -> OFAv2Space:
    """The run's space (``supernet.builder.build_space`` of ``config.supernet``)."""
    return build_space(config.supernet)


def endless_orders(count: int, batch_size: int, info: WorkerInfo, seed: int, *position: int):
    """This rank's shuffled index lists, pass after pass; pass ``c`` is shuffled by a generator
    derived from ``(seed, *position, c)``, so the stream is the same on a resumed run."""
    cycle = 0
    while True:
        yield from batch_order(count, batch_size, shuffle=True, generator=torch_generator(seed, *position, cycle),
                               drop_last=True, rank=info.rank, world_size=info.world_size)
        cycle += 1


def endless_batches(splits: Splits | StreamedSplits, batch_size: int, info: WorkerInfo, seed: int, *position: int):
    """This rank's training batches (``endless_orders``), from memory or decoded by the loader."""
    return splits.train.batches_from(endless_orders(len(splits.train), batch_size, info, seed, *position))


class SupernetTrainer:
    """One worker's training run (see the module docstring)."""

    def __init__(self, loop_config: dict[str, Any]) -> None:
        self.config = PipelineConfig.model_validate(loop_config["config"])
        self.settings = loop_config
        self.train = self.config.train
        self.seed = self.config.run.seed
        context = ray.train.get_context()
        device = ray.train.torch.get_device() if self.train.use_gpu else torch.device("cpu")
        self.info = WorkerInfo(context.get_world_rank(), context.get_world_size(), device)
        self.splits = load_splits_from_config(self.config.data, self.seed).for_device(device)
        self.held_out: TrainingHoldOut | None = None
        if self.train.distillation == "cream":  # Cream's images: a seeded slice of the training split
            self.splits, self.held_out = hold_out_from_train(
                self.splits, self.train.cream.held_out_images, derive_seed(self.seed, 2) % 2**31)
        self.space = make_space(self.config)
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(derive_seed(self.seed, 0))
            self.net = build_supernet(self.config.supernet, self.splits.num_classes)
        if self.train.init_from is not None:  # the driver has checked and reported the match
            initialise_from(self.net, self.settings["init_from"])
        self.net.to(device)
        self.precision = ForwardPrecision.on(self.train.precision, device)
        self.precision.prepare_model(self.net)
        self.scaler = self.precision.grad_scaler()
        broadcast_parameters(self.net, self.info)
        batch = self.config.data.batch_size
        self.steps_per_epoch = self.train.steps_per_epoch or max(1, num_batches(
            len(self.splits.train), batch, drop_last=True, world_size=self.info.world_size))
        self.plan = build_plan(self.train, self.space, self.steps_per_epoch)
        self.part_offsets = np.cumsum([0] + [p.steps for p in self.plan]).tolist()
        scale = batch * self.info.world_size / 64.0 if self.train.lr_scaling == "linear" else 1.0
        self.lr_scale = scale
        self.view = self._data_view()
        self.optimizer = make_optimizer(self.net, self.config)
        self.teacher: torch.nn.Module | None = None
        self.cream = self._cream_state() if self.train.distillation == "cream" else None
        self.state = TrainState(fingerprint=self.fingerprint())
        if self.train.init_from is not None:  # the initialised network teaches the first phase
            self.state.phase_best = {"phase": "init_from", "top1": float("-inf"), "last_exit_only": True,
                                     "state": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}}

    # ------------------------------------------------------------------ setup helpers
    def _rng_devices(self) -> list[int]:
        return [self.info.device.index or 0] if self.info.device.type == "cuda" else []

    def fingerprint(self) -> dict[str, Any]:
        return {
            "space": self.space.options(),
            "plan": [(p.phase, p.part_index, p.steps, p.lr) for p in self.plan],
            "world_size": self.info.world_size,
            "batch_size": self.config.data.batch_size,
            "seed": self.seed,
            "distillation": self.train.distillation,
            "data": self.config.data.model_dump(),
        }

    def _data_view(self) -> DataView:
        calibration = calibration_subset(self.splits, self.train.calibration_images, self.seed)
        val = self.splits.eval_subset(self.train.eval_images, self.seed)  # streamed: seeded, decoded once if it fits
        return DataView(self.splits.mean, self.splits.std, calibration,
                        val.cached(int(self.config.evaluate.cache_mb * 2**20)),
                        self.train.calibration_batch_size, self.info.device, self.splits.eval_crop)

    def _cream_state(self) -> CreamState:
        cfg = self.train.cream
        resolution = max(self.space.resolutions)
        held_out = eval_transform(self.held_out.images.to(self.info.device),
                                  self.splits.mean, self.splits.std, resolution, self.splits.eval_crop)
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(derive_seed(self.seed, 1))
            meta = MetaNetwork(self.splits.num_classes, cfg.meta_hidden).to(self.info.device)
        costs = ArchCostCounter(self.net)

        return CreamState(
            board=PrioritizedBoard(cfg.board_size, cfg.accuracy_margin), meta=meta,
            meta_optimizer=torch.optim.Adam(meta.parameters(), lr=cfg.meta_lr),
            held_out_images=held_out, held_out_labels=self.held_out.labels.to(self.info.device),
            stored_images=held_out[: cfg.stored_images], macs=lambda arch: costs(arch)["macs_m"],
        )

    def _teacher_from(self, source: dict[str, Any]) -> torch.nn.Module:
        """The frozen teacher of a recorded source; ``train.init_from``'s teaches with its last exit
        alone, since the exits it did not have start untrained."""
        return self.precision.prepare_model(build_teacher(
            source["state"], self.space, self.splits.num_classes, self.view,
            all_exits=self.space.early_exits and not source.get("last_exit_only", False)))

    # ------------------------------------------------------------------ checkpoint
    def restore(self) -> None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                self.state = load_state(Path(directory), self.fingerprint())
        elif self.settings.get("resume_from"):
            self.state = load_state(Path(self.settings["resume_from"]), self.fingerprint())
        else:
            return
        self.net.load_state_dict(self.state.model)
        if self.state.epoch_in_part > 0 and self.state.optimizer is not None:
            self.optimizer.load_state_dict(self.state.optimizer)
        if self.state.teacher_source is not None:
            self.teacher = self._teacher_from(self.state.teacher_source)
        if self.cream is not None and self.state.board is not None:
            self.cream.board.load_state_dict(self.state.board)
            self.cream.meta.load_state_dict(self.state.meta)
            self.cream.meta_optimizer.load_state_dict(self.state.meta_optimizer)
        if self.state.torch_rng is not None:
            torch.set_rng_state(self.state.torch_rng)

    def checkpoint(self, metrics: dict[str, Any]) -> None:
        """Rank 0 writes the state; every rank reports (Ray persists rank 0's directory)."""
        state = self.state
        state.model = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
        state.optimizer = self.optimizer.state_dict()
        state.torch_rng = torch.get_rng_state()
        if self.cream is not None:
            state.board = self.cream.board.state_dict()
            state.meta = self.cream.meta.state_dict()
            state.meta_optimizer = self.cream.meta_optimizer.state_dict()
        if not self.info.is_main:
            ray.train.report(metrics, checkpoint=None)
            return
        if self.settings["local_mode"]:
            directory = Path(self.settings["storage"]) / self.settings["name"] / (
                f"{LOCAL_CHECKPOINT_PREFIX}{state.global_epoch:06d}")
            save_state(state, directory)
            for old in sorted(directory.parent.glob(LOCAL_CHECKPOINT_PREFIX + "*"))[:-2]:
                shutil.rmtree(old, ignore_errors=True)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(directory)))
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_state(state, Path(tmp))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    # ------------------------------------------------------------------ parts and phases
    def start_part(self, part: PartPlan) -> None:
        """Phase start: new teacher; expand parts: re-organise channels; every part: new optimiser."""
        first_of_phase = part.part_index == 0
        if first_of_phase and part.phase != "full":
            source = self.state.phase_best
            mode = self.train.distillation
            if source is not None and (mode == "dynamic" or (mode == "fixed" and self.state.teacher_source is None)):
                self.state.teacher_source = {"phase": source["phase"], "state": source["state"],
                                             "last_exit_only": source.get("last_exit_only", False)}
                self.teacher = self._teacher_from(self.state.teacher_source)
        if first_of_phase:
            self.state.phase_best = None
        if part.phase == "expand":
            self.net.reorganize_channels()  # in place: the weights keep their memory format
        self.optimizer = make_optimizer(self.net, self.config)

    def _epoch_batches(self, global_epoch: int):
        return endless_batches(self.splits, self.config.data.batch_size, self.info, self.seed, 10, global_epoch)

    def _maybe_fail(self, global_epoch: int) -> None:
        if self.settings.get("fail_at_epoch") != global_epoch or self.info.rank != self.info.world_size - 1:
            return
        marker = Path(self.settings["fault_marker"])
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"injected fault at epoch {global_epoch}\n")
        if self.settings["local_mode"]:
            raise RuntimeError(f"injected fault at epoch {global_epoch} ({FAULT_EPOCH_VARIABLE})")
        os._exit(1)

    def run_epoch(self, part: PartPlan) -> dict[str, Any]:
        state = self.state
        epoch = state.global_epoch
        first = state.epoch_in_part * self.steps_per_epoch
        last = min(part.steps, first + self.steps_per_epoch)
        batches = self._epoch_batches(epoch)
        ctx = StepContext(self.net, self.optimizer, self.train, self.info, self.teacher, self.cream,
                          self.precision, self.scaler)
        cream_warmup = round(self.train.cream.warmup_epochs * self.train.epochs_scale * self.steps_per_epoch)
        losses, images_seen, lr, data_wait = [], 0, 0.0, 0.0
        start = time.perf_counter()
        with torch.random.fork_rng(devices=self._rng_devices()):
            torch.manual_seed(derive_seed(self.seed, 13, epoch, self.info.rank))
            for step in range(first, last):
                global_step = self.part_offsets[self.plan.index(part)] + step
                use_board = self.cream is not None and global_step >= cream_warmup
                waiting = time.perf_counter()
                images_u8, labels = next(batches)
                data_wait += time.perf_counter() - waiting
                resolution = choose_resolution(self.space.resolutions, torch_generator(self.seed, 11, epoch, step))
                images = self.precision.prepare_batch(train_transform(
                    images_u8.to(self.info.device), self.splits.mean, self.splits.std,
                    resolution, torch_generator(self.seed, 12, epoch, step, self.info.rank)))
                labels = labels.to(self.info.device)
                archs = self._sample_archs(part, resolution, numpy_generator(self.seed, 14, epoch, step), use_board)
                lr = lr_at(step, part, part.lr * self.lr_scale)
                meta_step = use_board and step % self.train.cream.meta_update_interval == 0
                losses.append(train_step(ctx, archs, images, labels, lr, part.phase == "full", use_board, meta_step))
                if use_board:
                    update_board(ctx, archs)
                images_seen += images_u8.shape[0] * self.info.world_size
                if step == first:
                    self._maybe_fail(epoch)
        elapsed = time.perf_counter() - start
        average_batchnorm_buffers(self.net, self.info)
        mean_loss = torch.tensor([float(np.mean(losses))], device=self.info.device)
        mean_wait = torch.tensor([data_wait], device=self.info.device)
        allreduce_mean([mean_loss, mean_wait], self.info)
        return {"loss": float(mean_loss.item()), "lr": lr, "steps": last - first,
                "images_per_s": images_seen / max(elapsed, 1e-9), "train_s": elapsed,
                "data_wait_s": float(mean_wait.item()),
                "data_wait_share": min(1.0, float(mean_wait.item()) / max(elapsed, 1e-9))}

    def _sample_archs(self, part: PartPlan, resolution: int, rng: np.random.Generator,
                      use_board: bool) -> list[dict]:
        if part.phase == "full":
            return [dict(self.space.largest(), resolution=resolution)]
        prior = board_prior(self.cream.board, self.train.cream.sampling_mix) if use_board else None
        return [sample_arch(self.space, part.choices, rng, resolution, prior)
                for _ in range(part.subnets_per_step)]

    def evaluate(self, part: PartPlan) -> dict[str, float]:
        """Rank 0: top-1 of max, min and sampled subnets; shared with every rank."""
        scores: dict[str, float] = {}
        if self.info.is_main:
            largest = self.space.largest()
            smallest = extreme_arch(self.space, part.choices, smallest=True)
            scores["top1_max"] = evaluate_subnet(self.net, largest, self.view)
            scores["top1_min"] = evaluate_subnet(self.net, smallest, self.view)
            rng = numpy_generator(self.seed, 20, self.plan.index(part))
            sampled = [evaluate_subnet(self.net, sample_arch(
                self.space, part.choices, rng, int(rng.choice(self.space.resolutions))), self.view)
                for _ in range(self.train.eval_subnets)]
            for index, value in enumerate(sampled):
                scores[f"top1_s{index + 1}"] = value
            scores["top1_sampled_mean"] = float(np.mean(sampled)) if sampled else float("nan")
            scores["top1_best"] = max([scores["top1_max"], scores["top1_min"], *sampled])
        return broadcast_object(scores, self.info)

    def _cream_record(self) -> dict[str, Any]:
        """The board (best path first) and the held-out slice, for the published checkpoint."""
        if self.cream is None:
            return {}
        return {CREAM_EXTRA_KEY: board_record(self.cream.board, self.held_out.seed, self.held_out.train_indices)}

    def skipped_scores(self) -> dict[str, float]:
        keys = ["top1_max", "top1_min", *[f"top1_s{i + 1}" for i in range(self.train.eval_subnets)],
                "top1_sampled_mean", "top1_best"]
        return dict.fromkeys(keys, float("nan"))

    # ------------------------------------------------------------------ main
    def run(self) -> dict[str, Any]:
        self.restore()
        metrics: dict[str, Any] = self.state.history[-1] if self.state.history else {}
        while self.state.part_index < len(self.plan):
            part = self.plan[self.state.part_index]
            if self.state.epoch_in_part == 0:
                self.start_part(part)
            row = self.run_epoch(part)
            state = self.state
            due = (state.epoch_in_part + 1 == part.epochs
                   or (state.global_epoch + 1) % self.train.eval_interval == 0)
            scores = self.evaluate(part) if due else self.skipped_scores()
            state.global_epoch += 1
            best = state.phase_best
            if due and (best is None or scores["top1_max"] > best["top1"]):
                state.phase_best = {"phase": part.phase, "top1": scores["top1_max"], "state": {
                    k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}}
            metrics = {
                "phase": part.phase, "part": part.part_index + 1, "epoch": state.global_epoch,
                "part_epoch": state.epoch_in_part + 1, "part_epochs": part.epochs,
                "total_epochs": self.plan[-1].first_epoch + self.plan[-1].epochs, **row, **scores,
                "teacher": state.teacher_source["phase"] if state.teacher_source else "",
                "board_size": len(self.cream.board) if self.cream else 0,
                "world_size": self.info.world_size,
            }
            state.history.append(metrics)
            state.epoch_in_part += 1
            if state.epoch_in_part >= part.epochs:
                state.part_index += 1
                state.epoch_in_part = 0
            if self.info.is_main:
                publish_epoch(Path(self.settings["run_dir"]), self.net, state.history, {
                    "space": self.space.options(), "num_classes": self.splits.num_classes,
                    "phase": part.phase, "part": part.part_index + 1, "epoch": state.global_epoch,
                    "top1_max": scores["top1_max"], "dropout": self.config.supernet.dropout,
                    **self._cream_record(),
                })  # the driver prints the epoch's line from this file (train.progress)
            self.checkpoint(metrics)
        return metrics


def train_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train's entry point on every worker (see the module docstring)."""
    with torch_threads(loop_config["config"]["train"].get("threads_per_worker")):
        return SupernetTrainer(loop_config).run()
