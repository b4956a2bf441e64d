"""Latency benchmark: repeatability of a latency profile and the held-out error of the search's predictor.

Both run on one ``LatencyWorker`` (the latency actor's body, in process) under a one-thread
profile that fixes optimisation level, execution mode and spinning and times until the median's
relative standard error is below 1 % (``pipeline.evaluate.latency``), with either timer: the
inference thread's CPU time (``thread_cpu``) or wall time. The space is given by the
caller: OFA's stage widths at 64 and 128 px for the realistic figures, the demo's for comparison.

- ``latency_repeatability``: ``archs`` timed in ``sessions`` fresh ONNX Runtime sessions each,
  interleaved round-robin (slow drift of the machine spreads over every architecture); per
  architecture the CV of its session medians; the median CV over architectures.
- ``latency_prediction``: the measured set's latencies, with the same cheap features the search
  gives its predictor (``params_m`` / ``macs_m``, ``arch_costs`` on the supernet), scored by
  ``predictor.held_out_error`` (K-fold: each architecture predicted by a ``LatencyPredictor``
  fitted without it), exactly what ``MeasuredLatencyPredictor.held_out_error`` reports in a search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import HardwareProfile
from pipeline.evaluate.actors import LatencyWorker
from pipeline.evaluate.predictor import held_out_error
from pipeline.evaluate.profiles import latency_metric
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet.costs import arch_costs

PROFILE = "local_one_thread"


@dataclass(frozen=True)
class LatencyFigure:
    """One latency figure, with the median latency of the set it was measured on."""

    value: float
    median_latency_ms: float
    detail: str


def bench_profile(repeats: int, max_repeats: int, timer: str = "wall", target_rse: float = 0.01,
                  speed_reference: bool = False) -> HardwareProfile:
    """One intra-op thread, every ONNX Runtime setting fixed, timed until the median is stable."""
    return HardwareProfile(name=PROFILE, threads=1, optimization_level="all", execution_mode="sequential",
                           allow_spinning=False, timer=timer, warmup=max(3, repeats // 5), repeats=repeats,
                           max_repeats=max_repeats, target_rse=target_rse, speed_reference=speed_reference)


def latency_worker(space: OFAv2Space, profile: HardwareProfile, cache: Path) -> LatencyWorker:
    return LatencyWorker(space.options(), 10, profile.model_dump(mode="json"), str(cache))


def _measure(worker: LatencyWorker, arch: dict) -> float:
    return float(worker.run(arch)["metrics"][latency_metric(PROFILE)])


def latency_repeatability(worker: LatencyWorker, archs: list[dict], sessions: int) -> LatencyFigure:
    """Median over ``archs`` of the CV of each one's medians across ``sessions`` round-robin sessions."""
    for arch in archs:  # export every model first, so the sessions time only ONNX Runtime
        worker.onnx_path(arch)
    medians = np.zeros((len(archs), sessions))
    for session in range(sessions):
        for index, arch in enumerate(archs):
            medians[index, session] = _measure(worker, arch)
    cvs = medians.std(axis=1) / medians.mean(axis=1)
    median_ms = float(np.median(medians))
    return LatencyFigure(float(np.median(cvs)), median_ms, (
        f"{len(archs)} archs x {sessions} sessions, median latency {median_ms:.2f} ms "
        f"(range {medians.min():.2f}-{medians.max():.2f}), worst CV {cvs.max():.3f}"))


def latency_prediction(worker: LatencyWorker, archs: list[dict], folds: int = 5) -> tuple[LatencyFigure, float]:
    """Held-out share within +-10 % (and the mean relative error) of the search's latency predictor."""
    latencies = [_measure(worker, arch) for arch in archs]
    features = [{name: float(value) for name, value in arch_costs(worker.net, arch).items()} for arch in archs]
    mape, within = held_out_error(worker.space, archs, latencies, features, folds=folds)
    median_ms = float(np.median(latencies))
    errors = f"mean error {100 * mape:.1f}%"
    return LatencyFigure(within, median_ms, (
        f"{len(archs)} measured archs, {folds}-fold held out; {errors}; median latency {median_ms:.2f} ms "
        f"(range {min(latencies):.2f}-{max(latencies):.2f})")), mape


def sample_archs(space: OFAv2Space, count: int, seed: int) -> list[dict]:
    """``count`` distinct architectures sampled uniformly, with every resolution equally often."""
    rng = np.random.default_rng(seed)
    archs, seen = [], set()
    resolutions = list(space.resolutions)
    while len(archs) < count:
        arch = space.sample(rng)
        arch["resolution"] = resolutions[len(archs) % len(resolutions)]
        arch = space.validate(arch)
        key = space.to_text(arch)
        if key not in seen:
            seen.add(key)
            archs.append(arch)
    return archs
