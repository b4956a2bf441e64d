"""The driver side of supernet training: run naming, resume, and the ``TorchTrainer``.

``train_supernet(config, run_dir, resume)`` keeps Ray Train's storage under
``RUN_DIR/train`` (absolute; on a cluster RUN_DIR must be on shared storage, since rank 0 also
publishes there). A fresh run gets a unique name (``<run.name>-<8 hex>``), recorded in
``RUN_DIR/train/run.json``; ``resume=True`` reuses that name, and Ray Train restores its
checkpoint manager from the same ``storage_path``/``name``, so ``ray.train.get_checkpoint()``
returns the last epoch. With ``train.num_workers = 0`` (Ray Train's in-process mode, for tests and
quick local runs) Ray Train persists nothing, so the loop writes its checkpoints itself and the
driver passes the latest one as ``resume_from``.

Workers: ``num_workers`` CPU workers with gloo, or GPUs with NCCL when ``use_gpu`` is set; each
CPU worker reserves ``threads_per_worker`` CPUs (1 when unset) and sets torch's thread count.
Worker failures are retried up to ``train.max_failures`` times from the last checkpoint.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text_atomic
from pipeline.config import PipelineConfig
from pipeline.supernet.init_from import preview
from pipeline.train.files import TrainFiles
from pipeline.train.loop import LOCAL_CHECKPOINT_PREFIX, injected_fault_epoch, train_loop_per_worker
from pipeline.train.progress import PLAIN_PROGRESS, Progress, epoch_lines
from pipeline.train.workers import fit_trainer, torch_trainer

RUN_FILE = "run.json"
_log = logging.getLogger(__name__)


def _run_name(config: PipelineConfig, train_root: Path, resume: bool) -> str:
    run_file = train_root / RUN_FILE
    if resume and run_file.is_file():
        return json.loads(run_file.read_text())["name"]
    name = f"{config.run.name}-{uuid.uuid4().hex[:8]}"
    write_text_atomic(run_file, json.dumps({"name": name}))
    return name


def latest_local_checkpoint(train_root: Path, name: str) -> Path | None:
    candidates = sorted((train_root / name).glob(LOCAL_CHECKPOINT_PREFIX + "*"))
    return candidates[-1] if candidates else None


def train_supernet(config: PipelineConfig, run_dir: Path, resume: bool = False,
                   progress: Progress = PLAIN_PROGRESS) -> dict[str, Any]:
    """Train the supernet of ``config`` into ``run_dir``; returns the last epoch's metrics.

    Ray's environment is the caller's (``pipeline.runtime.ray_session`` prepares it)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    train_root = TrainFiles(run_dir).train_storage
    name = _run_name(config, train_root, resume)
    train = config.train
    local = train.num_workers == 0
    resume_from = latest_local_checkpoint(train_root, name) if (resume and local) else None
    loop_config = {
        "config": config.model_dump(mode="json"),
        "run_dir": str(run_dir),
        "storage": str(train_root),
        "name": name,
        "local_mode": local,
        "resume_from": str(resume_from) if resume_from else None,
        "fault_marker": str(train_root / name / "fault_injected"),
        "init_from": str(Path(train.init_from).resolve()) if train.init_from else None,
        "fail_at_epoch": injected_fault_epoch(),  # read here, so it reaches workers on any node
    }
    if train.init_from and not resume:
        for line in preview(config.supernet, train.init_from):
            _log.info(line)
    trainer = torch_trainer(train_loop_per_worker, loop_config, train, train.num_workers, RunConfig(
        name=name,
        storage_path=str(train_root),
        failure_config=FailureConfig(max_failures=train.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
    ))
    with epoch_lines(TrainFiles(run_dir).metrics, progress):  # one line per epoch, from rank 0's published file
        result = fit_trainer(trainer)
    metrics = dict(result.metrics or {})
    metrics["run_name"] = name
    metrics["supernet_path"] = str(TrainFiles(run_dir).supernet)
    metrics["metrics_path"] = str(TrainFiles(run_dir).metrics)
    return metrics
