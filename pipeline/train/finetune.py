"""Post-processing fine-tuning of chosen subnets (NATv2), one Ray Tune trial per architecture.

For each architecture:

1. extract the subnet from the trained supernet (with all exits up to the chosen one when
   ``joint_exits`` and the supernet has early exits) and recalibrate its BatchNorm;
2. train on the training split with early stopping on validation loss (``patience``,
   ``max_epochs``, cosine schedule over ``max_epochs``);
3. retrain from the same extracted weights on train + validation for the best epoch count
   (cosine over that count), then measure test accuracy — the test split is used only here;
4. export the chosen subnet - its own exit only: the other heads of joint-exit training are not
   part of it - into ``RUN_DIR/models/<arch_id>/``: with the ``deploy`` hook the stage layer hands
   in, its deploy bundle (``pipeline.deploy_bundle``: ``fp32.onnx`` checked against torch, one
   INT8 model per ``int8`` hardware profile, ``card.json`` with every figure measured by ONNX
   Runtime), else ``fp32.onnx`` alone; and count its costs (so ``params_m``/``macs_m`` equal its
   archive row's).

``finetune_architecture`` does one architecture without Ray; ``run_finetune`` runs the trials
with Ray Tune and writes ``finetuned.parquet``.

The training forward passes follow ``train.precision`` (``pipeline.supernet.precision``: autocast,
a gradient scaler for fp16, channels_last on CUDA); the loss is computed in float32, and BN
recalibration, validation, test and the exported model stay fp32.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.atomic import write_parquet_atomic, write_text_atomic
from pipeline.config import DataConfig, EvaluateConfig, FinetuneConfig, PipelineConfig, TrainConfig
from pipeline.data import load_splits_from_config
from pipeline.data.augment import eval_transform, train_transform
from pipeline.data.imageset import ImageSet
from pipeline.data.splits import Splits
from pipeline.data.streamed import StreamedSplits
from pipeline.errors import ConfigError
from pipeline.schema import utc_now
from pipeline.space.base import SearchSpace
from pipeline.supernet.bn import recalibrate_bn
from pipeline.supernet.checkpoint import load_supernet
from pipeline.supernet.costs import count_costs
from pipeline.supernet.export import export_checked
from pipeline.supernet.precision import FP32, ForwardPrecision, float_logits, optimizer_step, scaled_backward
from pipeline.train.evaluation import count_correct
from pipeline.train.files import TrainFiles
from pipeline.train.losses import multi_exit_loss
from pipeline.train.optim import momentum_sgd, parameter_groups
from pipeline.train.progress import PLAIN_PROGRESS, Progress, TrialLines

_log = logging.getLogger(__name__)

Reporter = Callable[[dict[str, Any]], None]
DataSplits = Splits | StreamedSplits


def _as_exit_list(output: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return list(output) if isinstance(output, (tuple, list)) else [output]


def _loss(output, labels: torch.Tensor, exit_weights: Sequence[float], label_smoothing: float) -> torch.Tensor:
    exits = _as_exit_list(output)
    if len(exits) == 1:
        return F.cross_entropy(exits[0], labels, label_smoothing=label_smoothing)
    weights = np.asarray(exit_weights[: len(exits)], dtype=float)
    return multi_exit_loss(exits, labels, (weights / weights.sum()).tolist(), label_smoothing)


def evaluate_module(
    module: nn.Module, images: ImageSet, splits: DataSplits, resolution: int, batch_size: int, device: torch.device,
) -> tuple[float, float]:
    """(cross-entropy, top-1 %) of the module's last output on an image set (in order)."""
    module.eval()
    total_loss, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x_u8, y in images.batches(batch_size):
            x = eval_transform(x_u8.to(device), splits.mean, splits.std, resolution, splits.eval_crop)
            y = y.to(device)
            logits = _as_exit_list(module(x))[-1]
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += count_correct(logits, y)
            seen += y.shape[0]
    count = max(1, seen)
    return total_loss / count, 100.0 * correct / count


def _train_epochs(
    module: nn.Module, images: ImageSet, splits: DataSplits, resolution: int,
    settings: FinetuneConfig, train: TrainConfig, epochs: int, seed: int, device: torch.device,
    on_epoch: Callable[[int, float], bool] | None = None, precision: ForwardPrecision = FP32,
) -> None:
    """Train for up to ``epochs``; ``on_epoch(epoch, train_loss)`` returning True stops early.
    The exit weights and SGD's momentum are supernet training's (``train``)."""
    groups = parameter_groups(module, settings.weight_decay)
    if settings.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=settings.lr)
    else:
        optimizer = momentum_sgd(groups, settings.lr, train)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    generator = torch.Generator().manual_seed(seed)
    scaler = precision.grad_scaler()
    precision.prepare_model(module)
    for epoch in range(epochs):
        module.train()
        losses = []
        for x, y in images.batches(settings.batch_size, shuffle=True, generator=generator,
                                   drop_last=len(images) > settings.batch_size):
            x = precision.prepare_batch(train_transform(x.to(device), splits.mean, splits.std, resolution, generator))
            with precision.autocast():
                output = module(x)
            loss = _loss(float_logits(output), y.to(device), train.exit_weights, settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaled_backward(loss, scaler)
            optimizer_step(optimizer, scaler)
            losses.append(loss.item())
        scheduler.step()
        if on_epoch is not None and on_epoch(epoch, float(np.mean(losses)) if losses else math.nan):
            return


def _calibrated_start(supernet_path: str | Path, arch: dict[str, Any], joint_exits: bool, splits: DataSplits,
                      evaluate: EvaluateConfig) -> tuple[SearchSpace, dict[str, Any], nn.Module, bool]:
    """(space, canonical arch, extracted subnet with BN recalibrated, whether it holds every exit).
    BN is recalibrated on as many training images, in batches as large, as the evaluator's."""
    supernet, _ = load_supernet(supernet_path)
    space = supernet.space
    arch = space.validate(arch)
    joint = joint_exits and "exit" in arch
    resolution = int(arch["resolution"])
    initial = supernet.extract(arch, all_exits=joint)
    batch = evaluate.calibration_batch_size
    # whole batches from the start of the training split, as many as cover calibration_images
    count = min(len(splits.train), evaluate.calibration_images)
    calibration = [eval_transform(images, splits.mean, splits.std, resolution, splits.eval_crop)
                   for images, _ in splits.train.head(-(-count // batch) * batch).batches(batch)]
    recalibrate_bn(initial, calibration)
    return space, arch, initial, joint


def _early_stopping(module: nn.Module, splits: DataSplits, resolution: int, settings: FinetuneConfig,
                    train: TrainConfig, seed: int, device: torch.device,
                    report: Reporter | None, precision: ForwardPrecision = FP32) -> dict[str, float]:
    """Stage 1: train on the training split, stop when validation loss stalls for ``patience``."""
    best = {"epoch": 0, "val_loss": math.inf}
    stale = [0]

    def after_epoch(epoch: int, train_loss: float) -> bool:
        val_loss, val_top1 = evaluate_module(module, splits.val, splits, resolution, settings.batch_size, device)
        if val_loss < best["val_loss"]:
            best.update(epoch=epoch + 1, val_loss=val_loss, val_top1=val_top1)
            stale[0] = 0
        else:
            stale[0] += 1
        if report is not None:
            report({"stage": 1, "epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_top1": val_top1})
        return stale[0] >= settings.patience

    _train_epochs(module, splits.train, splits, resolution, settings, train,
                  settings.max_epochs, seed, device, after_epoch, precision)
    return best


#: builds a fine-tuned subnet's deploy bundle: ``deploy(module, directory=, arch=, arch_id=, splits=,
#: profiles=, seed=, export_batch_size=)`` returns the row's columns, ``onnx_path`` and
#: ``onnx_max_abs_diff`` among them. The stage layer hands ``pipeline.deploy_bundle.deploy``.
Deployer = Callable[..., dict[str, Any]]

#: the file name of the fp32 model inside a subnet's folder (``pipeline.deploy_bundle.FP32_FILE``)
FP32_FILE = "fp32.onnx"


def export_only(module: nn.Module, *, directory: Path, arch: dict[str, Any], seed: int = 0,
                export_batch_size: int = 1, **_: Any) -> dict[str, Any]:
    """The deployer without a bundle: ``directory/fp32.onnx`` alone, checked against torch."""
    path = Path(directory) / FP32_FILE
    diff = export_checked(module, path, int(arch["resolution"]), export_batch_size, seed)
    return {"onnx_path": str(path), "onnx_max_abs_diff": diff, "bundle_dir": str(directory)}


def finetune_architecture(
    arch: dict[str, Any],
    supernet_path: str | Path,
    data: DataConfig,
    settings: FinetuneConfig,
    models_dir: str | Path,
    seed: int = 0,
    train: TrainConfig | None = None,
    evaluate: EvaluateConfig | None = None,
    report: Reporter | None = None,
    splits: DataSplits | None = None,
    precision: str = "fp32",
    deploy: Deployer | None = None,
) -> dict[str, Any]:
    """Fine-tune one architecture (two stages), export it to ONNX, and return its row.

    From the other sections (their defaults when None): ``train``'s exit weights and SGD momentum,
    ``evaluate``'s BN calibration sizes.

    With joint exits the extra heads only help training: the exported graph, and the costs in the
    row, are the chosen subnet's own (its exit alone), equal to its archive row's. ``precision``
    is ``train.precision``, for the training forward passes. ``deploy`` writes the subnet's folder
    ``models_dir/<arch_id>/`` (``Deployer``; without it, ``export_only``: the fp32 file alone).
    """
    started = time.perf_counter()
    train, evaluate = train or TrainConfig(), evaluate or EvaluateConfig()
    device = torch.device("cuda" if settings.use_gpu and torch.cuda.is_available() else "cpu")
    forward = ForwardPrecision.on(precision, device)
    splits = splits or load_splits_from_config(data, seed=seed).for_device(device)
    space, arch, initial, joint = _calibrated_start(supernet_path, arch, settings.joint_exits, splits, evaluate)
    arch_id, resolution = space.arch_id(arch), int(arch["resolution"])
    _, top1_before = evaluate_module(initial, splits.val, splits, resolution, settings.batch_size, device)
    best = _early_stopping(copy.deepcopy(initial).to(device), splits, resolution, settings, train, seed,
                           device, report, forward)
    best_epochs = max(1, int(best["epoch"]))

    # Stage 2: retrain on train + validation for the best epoch count, then test.
    module = copy.deepcopy(initial).to(device)
    _train_epochs(module, splits.train.concat(splits.val), splits, resolution, settings, train, best_epochs,
                  seed + 1, device, precision=forward)
    test = splits.test if len(splits.test) else splits.val
    test_loss, test_top1 = evaluate_module(module, test, splits, resolution, settings.batch_size, device)

    deployed = module.cpu().to(memory_format=torch.contiguous_format).eval().single_exit()
    bundle = (deploy or export_only)(deployed, directory=Path(models_dir) / arch_id, arch=arch, arch_id=arch_id,
                                     splits=splits, profiles=evaluate.profiles, seed=seed,
                                     export_batch_size=settings.export_batch_size)
    costs = count_costs(deployed, resolution)
    return {
        "arch_id": arch_id, "top1": test_top1, "test_loss": test_loss,
        "val_top1": float(best.get("val_top1", math.nan)), "top1_before": top1_before,
        "best_epochs": best_epochs, "params_m": costs["params_m"], "macs_m": costs["macs_m"],
        "joint_exits": joint, "finetune_s": time.perf_counter() - started, **bundle,
    }


def _tune_trial(trial_config: dict[str, Any], deploy: Deployer | None = None) -> None:
    """Ray Tune function trainable: fine-tune ``trial_config['arch']`` and report every epoch."""
    from ray import tune

    row = finetune_architecture(
        arch=trial_config["arch"],
        supernet_path=trial_config["supernet_path"],
        data=DataConfig.model_validate(trial_config["data"]),
        settings=FinetuneConfig.model_validate(trial_config["settings"]),
        models_dir=trial_config["models_dir"],
        seed=trial_config["seed"],
        train=TrainConfig.model_validate(trial_config["train"]),
        evaluate=EvaluateConfig.model_validate(trial_config["evaluate"]),
        report=lambda metrics: tune.report({**metrics, "done": False}),
        precision=trial_config.get("precision", "fp32"),
        deploy=deploy,
    )
    # the finished row survives an interrupted stage: a resumed stage skips this architecture
    write_text_atomic(Path(trial_config["rows_dir"]) / f"{row['arch_id']}.json", json.dumps(row))
    tune.report({**row, "done": True})


def run_finetune(
    archs: Sequence[dict[str, Any]],
    *,
    space: SearchSpace,
    run_dir: str | Path,
    run_id: str,
    data: DataConfig,
    settings: FinetuneConfig,
    seed: int = 0,
    train: TrainConfig | None = None,
    evaluate: EvaluateConfig | None = None,
    metadata: dict[str, Any] | None = None,
    resume: bool = False,
    progress: Progress = PLAIN_PROGRESS,
    precision: str = "fp32",
    deploy: Deployer | None = None,
) -> pd.DataFrame:
    """One Ray Tune trial per architecture; writes ``RUN_DIR/finetuned.parquet`` atomically.

    Every finished trial also leaves its row in ``RUN_DIR/tune/rows/<arch_id>.json``; with
    ``resume`` those architectures are not fine-tuned again (without it, old rows are discarded).
    ``train``, ``evaluate`` and ``deploy`` are as ``finetune_architecture`` takes them.
    """

    run_dir = Path(run_dir).resolve()
    rows_dir = TrainFiles(run_dir).tune_storage / "rows"
    finished: dict[str, dict[str, Any]] = {}
    for arch in archs:
        path = rows_dir / f"{space.arch_id(arch)}.json"
        if resume and path.is_file():
            finished[space.arch_id(arch)] = json.loads(path.read_text())
        else:
            path.unlink(missing_ok=True)
    rows = [_finished_row(space, arch, run_id, finished[space.arch_id(arch)])
            for arch in archs if space.arch_id(arch) in finished]
    remaining = [arch for arch in archs if space.arch_id(arch) not in finished]
    if rows:
        _log.info(f"finetune: {len(rows)} architecture(s) already fine-tuned, {len(remaining)} to go")
    if remaining:
        rows += _run_trials(remaining, space, run_dir, run_id, data, settings, seed,
                            train or TrainConfig(), evaluate or EvaluateConfig(), rows_dir, progress, precision,
                            deploy)
    frame = pd.DataFrame(rows)
    write_parquet_atomic(frame, TrainFiles(run_dir).finetuned, metadata or {})
    return frame


def _finished_row(space: SearchSpace, arch: dict[str, Any], run_id: str, metrics: dict[str, Any]) -> dict[str, Any]:
    row = {"run_id": run_id, "arch_id": space.arch_id(arch), "arch": space.to_text(arch),
           "space": space.name, "iteration": 0, "source": "finetune", "evaluated_at": utc_now()}
    row.update({k: v for k, v in metrics.items() if k in _ROW_KEYS or "@" in k})
    row.update(status="ok", error="")
    return row


def _run_trials(archs: Sequence[dict[str, Any]], space: SearchSpace, run_dir: Path, run_id: str, data: DataConfig,
                settings: FinetuneConfig, seed: int, train: TrainConfig, evaluate: EvaluateConfig,
                rows_dir: Path, progress: Progress, precision: str = "fp32",
                deploy: Deployer | None = None) -> list[dict]:
    from ray import tune

    base = {
        "supernet_path": str(TrainFiles(run_dir).supernet),
        "data": data.model_dump(mode="json"),
        "settings": settings.model_dump(mode="json"),
        "models_dir": str(TrainFiles(run_dir).models_dir),
        "seed": seed,
        "train": train.model_dump(mode="json"),
        "evaluate": evaluate.model_dump(mode="json"),
        "rows_dir": str(rows_dir),
        "precision": precision,
    }
    resources = {"cpu": settings.cpus_per_trial, "gpu": 1.0 if settings.use_gpu else 0.0}
    with progress.reporter(len(archs), "finetune") as report:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_tune_trial, deploy=deploy), resources),
            param_space={**base, "arch": tune.grid_search(list(archs))},
            tune_config=tune.TuneConfig(max_concurrent_trials=settings.max_concurrent_trials),
            run_config=tune.RunConfig(
                name=f"finetune-{run_id}-{int(time.time() * 1000)}",
                storage_path=str(TrainFiles(run_dir).tune_storage),
                verbose=1 if progress.verbose else 0,  # else one line per trial, no table
                callbacks=[TrialLines(len(archs), report)],
            ),
        )
        results = tuner.fit()
    rows = []
    for result in results:
        arch = result.config["arch"]
        if result.error is None and result.metrics.get("done"):
            rows.append(_finished_row(space, arch, run_id, result.metrics))
            continue
        rows.append({"run_id": run_id, "arch_id": space.arch_id(arch), "arch": space.to_text(arch),
                     "space": space.name, "iteration": 0, "source": "finetune", "evaluated_at": utc_now(),
                     "status": "failed", "error": str(result.error).splitlines()[0] if result.error else
                     "trial ended before reporting a result"})
    return rows


_ROW_KEYS = {
    "arch_id", "top1", "test_loss", "val_top1", "top1_before", "best_epochs", "params_m", "macs_m",
    "onnx_path", "onnx_max_abs_diff", "joint_exits", "finetune_s",
    # the deploy bundle's (pipeline.deploy_bundle.BUNDLE_KEYS); its per-profile columns hold an "@"
    "bundle_dir", "card_path", "timed_on", "eval_split", "test_top1_fp32",
}


def finetune_run(config: PipelineConfig, run_dir: str | Path, resume: bool = False,
                 archs: Sequence[dict[str, Any]] | None = None,
                 choose: Callable[[SearchSpace], Sequence[dict[str, Any]]] | None = None,
                 progress: Progress = PLAIN_PROGRESS, deploy: Deployer | None = None) -> pd.DataFrame:
    """The fine-tune stage on a run: ``archs``, or what ``choose`` picks in the run's space, each in a Tune trial.

    ``choose`` is how the stage layer passes ``finetune.source``'s choices, read from the run's results;
    ``deploy`` how it passes the deploy bundle (``pipeline.deploy_bundle.deploy``)."""
    net, _ = load_supernet(TrainFiles(run_dir).supernet)
    space = net.space
    if not archs and choose is None:
        raise ConfigError("finetune_run needs the architectures, or a way to choose them")
    chosen = [space.validate(a) for a in (archs or choose(space))]
    return run_finetune(
        chosen, space=space, run_dir=run_dir, run_id=config.run.name, data=config.data,
        settings=config.finetune, seed=config.run.seed, train=config.train, evaluate=config.evaluate,
        metadata={"config": config.model_dump(mode="json")}, resume=resume, progress=progress,
        precision=config.train.precision, deploy=deploy,
    )
