"""Bodies of the evaluation actors, and the pools that run them.

- ``AccuracyWorker`` loads the supernet checkpoint once, and again whenever a newer one is
  published (the file's modification time and size are checked before every candidate, i.e.
  between batches). Per architecture it returns BN-recalibrated validation top-1 (every exit's for
  early-exit architectures, see ``accuracy.SubnetScorer``), ``params_m`` and ``macs_m`` (counted on
  the extracted subnet), and ``supernet_round``: the adaptation round of the weights it used.
- ``LatencyWorker`` measures one hardware profile. Latency depends only on the architecture, not
  on the weights, so it builds a supernet of the space (no checkpoint needed: it can run while
  training runs), exports the extracted subnet to ONNX once per ``(arch_id, resolution, batch)``
  into a shared cache folder (``export_onnx`` writes atomically), and times it
  with ONNX Runtime under the profile's settings (``latency.measure_onnx``).
- ``NoOpWorker`` returns what it is given; the dispatch-overhead benchmark uses it.

The classes are plain Python; ``accuracy_pool`` / ``latency_pool`` wrap them with ``ray.remote``
and place latency actors only on nodes matching their profile (``profiles.actor_options``).
Every ``run`` returns ``{"metrics": {...}, "node_id": ..., "hostname": ...}``.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import DataConfig, EvaluateConfig, HardwareProfile
from pipeline.errors import CheckpointError, ConfigError
from pipeline.evaluate.dispatch import WorkerPool
from pipeline.evaluate.latency import SpeedReference, measure_onnx, speed_reference
from pipeline.evaluate.profiles import actor_options
from pipeline.space.base import Architecture, arch_id
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet.checkpoint import adaptation_round

_log = logging.getLogger(__name__)

#: metric (and archive column) naming the supernet adaptation round an accuracy was measured under
SUPERNET_ROUND = "supernet_round"


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # outside a Ray worker
        return ""


def _where() -> dict[str, str]:
    return {"node_id": _node_id(), "hostname": socket.gethostname()}


def evaluation_subsets(splits: Any, settings: EvaluateConfig) -> tuple[Any, Any]:
    """The (calibration, validation) image sets every candidate is measured on.

    In memory: the seeded calibration subset and the first ``val_images`` validation images (all
    when None), as always. Streamed: seeded subsets of both (``calibration_seed``; 10,000
    validation images when ``val_images`` is None), each decoded once and kept when it fits in
    what is left of ``cache_mb``, else re-streamed for every candidate."""
    from pipeline.data import TensorImageSet, calibration_subset

    if not splits.streamed:
        images = calibration_subset(splits, settings.calibration_images, settings.calibration_seed)
        return TensorImageSet(images, torch.zeros(images.shape[0], dtype=torch.int64)), splits.eval_subset(
            settings.val_images, settings.calibration_seed)
    budget = int(settings.cache_mb * 2**20)
    calibration = splits.train.sample(settings.calibration_images, settings.calibration_seed).cached(budget)
    if isinstance(calibration, TensorImageSet):
        budget -= calibration.decoded_bytes
    val = splits.eval_subset(settings.val_images, settings.calibration_seed).cached(max(0, budget))
    return calibration, val


class AccuracyWorker:
    """Evaluator actor body: supernet checkpoint + data, BN recalibration, validation top-1."""

    def __init__(
        self,
        checkpoint_path: str,
        data: dict[str, Any],
        seed: int,
        evaluate: dict[str, Any],
    ) -> None:
        from pipeline.data import load_splits_from_config
        from pipeline.evaluate.accuracy import SubnetScorer
        from pipeline.supernet.precision import ForwardPrecision

        settings = EvaluateConfig.model_validate(evaluate)
        torch.set_num_threads(settings.threads_per_evaluator)
        self.checkpoint_path = Path(checkpoint_path)
        splits = load_splits_from_config(DataConfig.model_validate(data), seed=seed)
        calibration, val = evaluation_subsets(splits, settings)
        self.scorer = SubnetScorer(
            calibration, val, splits.mean, splits.std,
            settings.calibration_batch_size, settings.eval_batch_size,
            ForwardPrecision.on(settings.precision, "cpu"),  # the actors run on CPUs
            crop=splits.eval_crop, cache_floats=not splits.streamed,
        )
        self.num_classes = splits.num_classes
        self.net: torch.nn.Module | None = None
        self._version: tuple[int, int] | None = None
        self.loads = 0
        self.reload_if_newer()

    def _stat(self) -> tuple[int, int]:
        try:
            stat = self.checkpoint_path.stat()
        except FileNotFoundError:
            raise CheckpointError(f"supernet checkpoint {self.checkpoint_path} does not exist") from None
        return stat.st_mtime_ns, stat.st_size

    def reload_if_newer(self) -> bool:
        """Load the checkpoint if it changed since the last load; True when it was (re)loaded."""
        from pipeline.supernet.checkpoint import load_supernet

        version = self._stat()
        if version == self._version:
            return False
        net, extra = load_supernet(self.checkpoint_path)
        if net.num_classes != self.num_classes:
            raise CheckpointError(
                f"supernet checkpoint {self.checkpoint_path} has {net.num_classes} classes, "
                f"the data set has {self.num_classes}"
            )
        net.eval()
        self.net, self._version = net, version
        self.supernet_round = adaptation_round(extra)
        self.loads += 1
        return True

    def run(self, arch: Architecture) -> dict[str, Any]:
        from pipeline.supernet.costs import arch_costs

        self.reload_if_newer()
        assert self.net is not None
        metrics = self.scorer.score(self.net, arch)
        metrics.update(arch_costs(self.net, arch))
        metrics[SUPERNET_ROUND] = float(self.supernet_round)  # which weights this accuracy belongs to
        return {"metrics": metrics, "checkpoint_loads": self.loads, **_where()}

    def ping(self) -> str:
        return _node_id()


class LatencyWorker:
    """Latency actor body for one hardware profile (see the module docstring)."""

    def __init__(
        self, space_options: dict[str, Any], num_classes: int, profile: dict[str, Any], cache_dir: str
    ) -> None:
        from pipeline.supernet.builder import build_supernet

        torch.set_num_threads(1)
        self.profile = HardwareProfile.model_validate(profile)
        self.net = build_supernet(space_options, num_classes).eval()
        self.space = self.net.space
        self.cache_dir = Path(cache_dir)
        self._reference: SpeedReference | None = None

    def onnx_path(self, arch: Architecture) -> tuple[Path, int, bool]:
        """The cached ONNX file of ``arch`` at the profile's resolution and batch; exported if missing."""
        from pipeline.supernet.export import export_onnx

        arch = self.space.validate(arch)
        resolution = self.profile.resolution or arch["resolution"]
        batch = self.profile.batch_size
        path = self.cache_dir / f"{arch_id(arch)}_r{resolution}_b{batch}.onnx"
        if path.is_file():
            return path, resolution, True
        export_onnx(self.net.extract(arch).eval(), path, resolution, batch_size=batch)  # atomic
        return path, resolution, False

    def reference(self) -> SpeedReference | None:
        """The profile's speed reference (built and timed on first use), or None when it has none.

        The reference is the space's architecture drawn with seed 0, at the profile's resolution or
        the middle of the space's resolutions."""
        if not self.profile.speed_reference:
            return None
        if self._reference is None:
            arch = self.space.sample(np.random.default_rng(0))
            resolutions = sorted(getattr(self.space, "resolutions", (arch["resolution"],)))
            arch["resolution"] = resolutions[len(resolutions) // 2]
            path, resolution, _ = self.onnx_path(arch)
            self._reference = speed_reference(path, self.profile, resolution)
        return self._reference

    def run(self, arch: Architecture) -> dict[str, Any]:
        path, resolution, cached = self.onnx_path(arch)
        stats = measure_onnx(path, self.profile, resolution, reference=self.reference())
        return {"metrics": stats.metrics(self.profile.name), "onnx_cached": cached, **_where()}

    def ping(self) -> str:
        return _node_id()


class NoOpWorker:
    """Returns its payload untouched: measures what dispatch itself costs."""

    def run(self, payload: Any) -> Any:
        return payload

    def ping(self) -> str:
        return _node_id()


def accuracy_pool(
    checkpoint_path: str | Path,
    data: DataConfig,
    seed: int,
    settings: EvaluateConfig,
    name: str = "accuracy",
) -> WorkerPool:
    """``settings.num_evaluators`` evaluator actors, one CPU share and thread budget each."""
    import ray

    placement = {"scheduling_strategy": "SPREAD"} if settings.evaluator_placement == "spread" else {}
    remote = ray.remote(AccuracyWorker).options(num_cpus=settings.evaluator_num_cpus, **placement)
    args = (str(checkpoint_path), data.model_dump(mode="json"), seed, settings.model_dump(mode="json"))
    return WorkerPool(
        name, lambda: remote.remote(*args), settings.num_evaluators,
        timeout_s=settings.candidate_timeout_s, max_retries=settings.max_retries,
    )


def latency_pool(
    profile: HardwareProfile,
    space: OFAv2Space,
    num_classes: int,
    cache_dir: str | Path,
    settings: EvaluateConfig,
) -> WorkerPool:
    """``profile.num_actors`` latency actors placed only on nodes that match ``profile``.

    An actor runs its calls one at a time, so measurements of one actor never overlap; on a
    shared machine they can still overlap with other actors' work (see ``HardwareProfile.num_cpus``).
    """
    import ray

    remote = ray.remote(LatencyWorker).options(**actor_options(profile))
    args = (space.options(), num_classes, profile.model_dump(mode="json"), str(cache_dir))
    return WorkerPool(
        profile.name, lambda: remote.remote(*args), profile.num_actors,
        timeout_s=settings.candidate_timeout_s, max_retries=settings.max_retries,
    )


def check_actor_resources(settings: EvaluateConfig) -> None:
    """Refuse a local Ray too small for the evaluator and latency pools (they would wait forever).

    Attached to a cluster (``RAY_ADDRESS`` set), an autoscaler may still add nodes, so only a
    warning is printed.
    """
    import os

    import ray

    needed = settings.num_evaluators * settings.evaluator_num_cpus + sum(
        profile.num_actors * profile.num_cpus for profile in settings.profiles
    )
    available = float(ray.cluster_resources().get("CPU", 0.0))
    if needed <= available + 1e-9:
        return
    message = (
        f"the evaluator and latency pools need {needed:g} CPUs but Ray has {available:g}; lower "
        "evaluate.num_evaluators, evaluate.evaluator_num_cpus or the profiles' num_cpus, or raise ray.num_cpus"
    )
    if os.environ.get("RAY_ADDRESS"):
        _log.warning(f"warning: {message} (waiting for the autoscaler)")
        return
    raise ConfigError(message)
