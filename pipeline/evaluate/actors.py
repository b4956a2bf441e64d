"""Bodies of the evaluation actors, and the pools that run them.

- ``AccuracyWorker`` loads the supernet checkpoint once, and again whenever a newer one is
  published (the file's modification time and size are checked before every candidate, i.e.
  between batches). Per architecture it returns BN-recalibrated validation top-1 (every exit's for
  early-exit architectures, see ``accuracy.SubnetScorer``), ``params_m`` and ``macs_m`` (counted on
  the extracted subnet), and ``supernet_round``: the adaptation round of the weights it used.
  For every ``int8`` hardware profile it also reports ``top1@<profile>``: the recalibrated subnet
  extracted (the architecture's own exit), quantised and run with ONNX Runtime on the same
  validation images (``int8.deployed_top1``; cached per architecture, profile and round).
- ``LatencyWorker`` measures one hardware profile. Latency depends only on the architecture, not
  on the weights, so it builds a supernet of the space (no checkpoint needed: it can run while
  training runs), exports the extracted subnet to ONNX once per ``(arch_id, resolution, batch)``
  into a shared cache folder (``export_onnx`` writes atomically), and times it
  with ONNX Runtime under the profile's settings (``latency.measure_onnx``). An ``int8`` profile
  times that file quantised (``int8.latency_model``, cached per ``(arch_id, resolution,
  batch, profile)``), calibrated on the seeded training images: only those are loaded, and the
  weights stay random, since INT8 latency does not depend on weight values either.
- ``NoOpWorker`` returns what it is given; the dispatch-overhead benchmark uses it.

The classes are plain Python; ``accuracy_pool`` / ``latency_pool`` wrap them with ``ray.remote``
and place latency actors only on nodes matching their profile (``profiles.actor_options``).
Every ``run`` returns ``{"metrics": {...}, "node_id": ..., "hostname": ...}``.
"""

from __future__ import annotations

import logging
import socket
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import DataConfig, EvaluateConfig, HardwareProfile
from pipeline.errors import CheckpointError, ConfigError, ProfileError
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
        cache_dir: str | None = None,
    ) -> None:
        from pipeline.data import calibration_subset, load_splits_from_config
        from pipeline.evaluate.accuracy import SubnetScorer
        from pipeline.evaluate.int8 import CalibrationImages
        from pipeline.supernet.precision import ForwardPrecision

        settings = EvaluateConfig.model_validate(evaluate)
        torch.set_num_threads(settings.threads_per_evaluator)
        self.settings = settings
        self.checkpoint_path = Path(checkpoint_path)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        splits = load_splits_from_config(DataConfig.model_validate(data), seed=seed)
        calibration, val = evaluation_subsets(splits, settings)
        self.deployed_profiles = [profile for profile in settings.profiles if profile.precision != "fp32"]
        count = max((profile.calibration_images for profile in self.deployed_profiles
                     if profile.precision == "int8"), default=0)
        self.int8_calibration = CalibrationImages(
            calibration_subset(splits, count, settings.calibration_seed), tuple(splits.mean), tuple(splits.std),
            splits.eval_crop,
        ) if count else None
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
        metrics.update(self.quantized_accuracies(arch))  # BN statistics are this arch's until the next score
        metrics.update(arch_costs(self.net, arch))
        metrics[SUPERNET_ROUND] = float(self.supernet_round)  # which weights this accuracy belongs to
        return {"metrics": metrics, "checkpoint_loads": self.loads, **_where()}

    def _int8_calibration_at(self, resolution: int, count: int) -> np.ndarray:
        """The first ``count`` INT8 calibration images at ``resolution`` (loaded when an int8 profile exists)."""
        assert self.int8_calibration is not None, "no int8 profile: no calibration images were drawn"
        return self.int8_calibration.at(resolution, count)

    def quantized_accuracies(self, arch: Architecture) -> dict[str, float]:
        """``top1@<profile>`` for every int8 and fp16 profile: the just-recalibrated subnet, quantised
        or converted and run with ONNX Runtime on the validation images (``int8.deployed_top1``)."""
        if not self.deployed_profiles:
            return {}
        from pipeline.evaluate.int8 import deployed_top1, trained_model_key
        from pipeline.evaluate.objectives import quantized_top1_metric
        from pipeline.quantize import deployed_name

        assert self.net is not None
        arch = self.net.space.validate(arch)
        resolution = arch["resolution"]
        subnet = self.net.extract(arch).eval()  # the deployed exit only, with the recalibrated statistics
        metrics = {}
        with tempfile.TemporaryDirectory() as scratch:
            folder = self.cache_dir / "trained" if self.cache_dir else Path(scratch)
            for profile in self.deployed_profiles:
                int8 = profile.precision == "int8"
                key = trained_model_key(arch_id(arch), profile.name, self.supernet_round,
                                        (*self._version, profile.calibration_images if int8 else 0,
                                         self.settings.calibration_seed))
                value, _ = deployed_top1(subnet, folder / deployed_name(key, profile.precision), profile.precision,
                                         partial(self._int8_calibration_at, resolution, profile.calibration_images),
                                         self.scorer.val_batches(resolution), resolution, self.num_classes,
                                         self.settings.threads_per_evaluator)
                metrics[quantized_top1_metric(profile.name)] = value
        return metrics

    def ping(self) -> str:
        return _node_id()


class LatencyWorker:
    """Latency actor body for one hardware profile (see the module docstring)."""

    def __init__(
        self, space_options: dict[str, Any], num_classes: int, profile: dict[str, Any], cache_dir: str,
        data: dict[str, Any] | None = None, seed: int = 0, calibration_seed: int = 0,
    ) -> None:
        """``data``, ``seed`` and ``calibration_seed`` (the data config, run seed and
        ``evaluate.calibration_seed``) are needed only by an int8 profile, to draw its calibration images."""
        from pipeline.supernet.builder import build_supernet

        torch.set_num_threads(1)
        self.profile = HardwareProfile.model_validate(profile)
        self.net = build_supernet(space_options, num_classes).eval()
        self.num_classes = num_classes
        self.space = self.net.space
        self.cache_dir = Path(cache_dir)
        self._data = DataConfig.model_validate(data) if data is not None else None
        self._seeds = (seed, calibration_seed)
        self._calibration: Any = None
        self._reference: SpeedReference | None = None

    def calibration(self, resolution: int) -> np.ndarray:
        """The int8 profile's calibration images at ``resolution`` (the data set is read once)."""
        from pipeline.evaluate.int8 import CalibrationImages

        if self._calibration is None:
            if self._data is None:
                raise ProfileError(f"hardware profile {self.profile.name!r} is int8 and its latency actor was "
                                   "given no data config to draw calibration images from")
            self._calibration = CalibrationImages.load(self._data, self._seeds[0], self.profile.calibration_images,
                                                       self._seeds[1])
        return self._calibration.at(resolution, self.profile.calibration_images)

    def onnx_path(self, arch: Architecture) -> tuple[Path, int, bool]:
        """The cached ONNX file the profile times for ``arch`` at its resolution and batch, made if
        missing: the exported fp32 model, or for an int8 profile that model quantised."""
        from pipeline.supernet.export import export_onnx

        arch = self.space.validate(arch)
        resolution = self.profile.resolution or arch["resolution"]
        batch = self.profile.batch_size
        path = self.cache_dir / f"{arch_id(arch)}_r{resolution}_b{batch}.onnx"
        cached = path.is_file()
        if not cached:
            export_onnx(self.net.extract(arch).eval(), path, resolution, batch_size=batch)  # atomic
        if self.profile.precision == "fp32":
            return path, resolution, cached
        from pipeline.evaluate.int8 import latency_model
        from pipeline.quantize import deployed_name

        deployed = self.cache_dir / deployed_name(f"{path.stem}_{self.profile.name}", self.profile.precision)
        deployed, cached = latency_model(path, deployed, self.profile.precision, partial(self.calibration, resolution),
                                         resolution, batch, self.num_classes)
        return deployed, resolution, cached

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
    cache_dir: str | Path | None = None,
) -> WorkerPool:
    """``settings.num_evaluators`` evaluator actors, one CPU share and thread budget each; the int8
    profiles of ``settings.profiles`` get ``top1@<profile>``, their models cached under ``cache_dir``."""
    import ray

    placement = {"scheduling_strategy": "SPREAD"} if settings.evaluator_placement == "spread" else {}
    remote = ray.remote(AccuracyWorker).options(num_cpus=settings.evaluator_num_cpus, **placement)
    args = (str(checkpoint_path), data.model_dump(mode="json"), seed, settings.model_dump(mode="json"),
            str(cache_dir) if cache_dir else None)
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
    data: DataConfig | None = None,
    seed: int = 0,
) -> WorkerPool:
    """``profile.num_actors`` latency actors placed only on nodes that match ``profile``.

    An actor runs its calls one at a time, so measurements of one actor never overlap; on a
    shared machine they can still overlap with other actors' work (see ``HardwareProfile.num_cpus``).
    An int8 profile's actors draw their calibration images from ``data`` (run seed ``seed``).
    """
    import ray

    remote = ray.remote(LatencyWorker).options(**actor_options(profile))
    args = (space.options(), num_classes, profile.model_dump(mode="json"), str(cache_dir),
            data.model_dump(mode="json") if data is not None else None, seed, settings.calibration_seed)
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
