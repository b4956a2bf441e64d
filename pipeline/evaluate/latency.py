"""Timing an ONNX model with ONNX Runtime under a hardware profile's fixed settings.

Every figure is tied to its settings, all fixed by the profile and passed to the one session
factory (``pipeline.onnx_runtime.ort_session``): execution provider, ``intra_op_num_threads``
(one inter-op thread), graph optimisation level, execution mode and intra-op thread spinning
(``session.intra_op.allow_spinning``), batch size and resolution. The model is run ``warmup``
times untimed, then timed one run at a time with ``time.perf_counter_ns``: at least ``repeats``
runs, then more in blocks until the running median is stable (``median_rse`` below the profile's
``target_rse``) or ``max_repeats`` runs are timed, by the profile's ``timer``: wall time, or the
CPU time of the thread that runs the model (``thread_cpu``, one intra-op thread only: what the
model costs, without the time a busy machine gives to other processes). The result is the median, the 90th percentile
and the coefficient of variation (population standard deviation / mean) of the runs, the last
being the noise check. With the profile's ``speed_reference`` a fixed model is timed after every
block too, and the figures are scaled to the machine's speed when the worker started
(``SpeedReference``), which cancels spells of a slower machine. On CUDA / TensorRT the input and output stay on the device through IO
binding and every timed run ends with ``synchronize_outputs``, so the time covers the work, not
just the launch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.config import HardwareProfile
from pipeline.evaluate.profiles import latency_metrics, profile_threads
from pipeline.onnx_runtime import ort_session

#: asymptotic standard error of a sample median is this times sigma / sqrt(n) (normal data)
MEDIAN_SE_FACTOR = 1.2533
#: MAD times this estimates sigma for normal data (robust to the slow outliers timing has)
MAD_TO_SIGMA = 1.4826


def median_rse(samples_ms: np.ndarray) -> float:
    """Relative standard error of the median of ``samples_ms``, from the MAD (inf for < 3 samples)."""
    samples_ms = np.asarray(samples_ms, dtype=float)
    if samples_ms.size < 3:
        return float("inf")
    median = float(np.median(samples_ms))
    if median <= 0:
        return float("inf")
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(samples_ms - median)))
    return MEDIAN_SE_FACTOR * sigma / np.sqrt(samples_ms.size) / median


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the timed repeats of one model, in milliseconds."""

    median_ms: float
    p90_ms: float
    cv: float
    repeats: int
    rse: float = float("nan")  # relative standard error of the median when timing stopped

    @classmethod
    def from_samples(cls, samples_ms: np.ndarray) -> LatencyStats:
        samples_ms = np.asarray(samples_ms, dtype=float)
        mean = float(samples_ms.mean())
        return cls(
            median_ms=float(np.median(samples_ms)),
            p90_ms=float(np.percentile(samples_ms, 90)),
            cv=float(samples_ms.std() / mean) if mean > 0 else 0.0,
            repeats=int(samples_ms.size),
            rse=median_rse(samples_ms),
        )

    def scaled(self, factor: float) -> LatencyStats:
        """The same runs with median and p90 times ``factor`` (the CV and RSE are unit-free)."""
        return replace(self, median_ms=self.median_ms * factor, p90_ms=self.p90_ms * factor)

    def metrics(self, profile: str) -> dict[str, float]:
        """As ``latency_ms@p``, ``latency_p90_ms@p`` and ``latency_cv@p``."""
        median, p90, cv = latency_metrics(profile)
        return {median: self.median_ms, p90: self.p90_ms, cv: self.cv}


def open_session(path: str | Path, profile: HardwareProfile):
    """An ``InferenceSession`` with the profile's provider, threads, optimisation, mode and spinning."""
    return ort_session(path, profile.provider, profile_threads(profile), profile.optimization_level,
                       profile.execution_mode, profile.allow_spinning, who=f"hardware profile {profile.name!r}")


def _runner(session, batch: np.ndarray) -> Callable[[], None]:
    """One synchronous run of ``session`` on ``batch`` (IO-bound to the device off CPU)."""
    input_name = session.get_inputs()[0].name
    on_device = session.get_providers()[0] != "CPUExecutionProvider"
    if on_device:
        import onnxruntime as ort

        binding = session.io_binding()
        binding.bind_ortvalue_input(input_name, ort.OrtValue.ortvalue_from_numpy(batch, "cuda", 0))
        for output in session.get_outputs():
            binding.bind_output(output.name, "cuda")

        def run_once() -> None:
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
    else:
        feeds = {input_name: batch}

        def run_once() -> None:
            session.run(None, feeds)

    return run_once


@dataclass(frozen=True)
class SpeedReference:
    """A fixed model timed after every block of a candidate's runs: how fast the machine is now.

    ``baseline_ms`` is its median when the worker started. A candidate's median and p90 are scaled
    by ``baseline_ms / median(reference runs during the candidate's timing)``, which cancels a
    slowdown of the whole machine (a busy host, a throttled core) that lasts longer than a block:
    such spells last seconds and move every model timed in them alike."""

    run_once: Callable[[], None]
    baseline_ms: float
    runs_per_block: int = 3


def _timed(run_once: Callable[[], None], clock: Callable[[], int]) -> float:
    start = clock()
    run_once()
    return (clock() - start) / 1e6


def time_until_stable(run_once: Callable[[], None], warmup: int, repeats: int, max_repeats: int | None = None,
                      target_rse: float = 0.0, clock: Callable[[], int] = time.perf_counter_ns,
                      reference: SpeedReference | None = None) -> LatencyStats:
    """Warm up, time at least ``repeats`` runs, then more until ``median_rse < target_rse`` or the cap.

    Runs are added in blocks of a fifth of ``repeats`` (at least 5), the rule checked after each.
    ``target_rse=0`` (or ``max_repeats <= repeats``) times exactly ``repeats`` runs. ``clock``
    returns nanoseconds. With a ``reference``, it is timed after every block and the result is
    scaled to the machine's speed at the reference's baseline (``SpeedReference``).
    """
    cap = max(repeats, max_repeats or repeats)
    block = max(5, repeats // 5)
    for _ in range(warmup):
        run_once()
    samples: list[float] = []
    reference_ms: list[float] = []
    while True:
        goal = repeats if len(samples) < repeats else cap  # the minimum first, then up to the cap
        count = min(block, goal - len(samples))
        samples += [_timed(run_once, clock) for _ in range(count)]
        if reference is not None:
            reference_ms += [_timed(reference.run_once, clock) for _ in range(reference.runs_per_block)]
        if len(samples) >= cap or (len(samples) >= repeats and median_rse(np.asarray(samples)) < target_rse):
            stats = LatencyStats.from_samples(np.asarray(samples))
            if reference is None:
                return stats
            return stats.scaled(reference.baseline_ms / float(np.median(reference_ms)))


def _clock(profile: HardwareProfile) -> Callable[[], int]:
    return time.thread_time_ns if profile.timer == "thread_cpu" else time.perf_counter_ns


def session_runner(path: str | Path, profile: HardwareProfile, resolution: int, seed: int = 0) -> Callable[[], None]:
    """One run of a fresh session on ``path`` under ``profile``, on a seeded batch at ``resolution``."""
    session = open_session(path, profile)
    shape = (profile.batch_size, 3, resolution, resolution)
    return _runner(session, np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def measure_onnx(path: str | Path, profile: HardwareProfile, resolution: int, seed: int = 0,
                 reference: SpeedReference | None = None) -> LatencyStats:
    """Open a fresh session on ``path`` and time it under ``profile`` at ``resolution``."""
    return time_until_stable(session_runner(path, profile, resolution, seed), profile.warmup, profile.repeats,
                             profile.max_repeats, profile.target_rse, clock=_clock(profile), reference=reference)


def speed_reference(path: str | Path, profile: HardwareProfile, resolution: int) -> SpeedReference:
    """The reference model on ``path``, its baseline timed now under ``profile`` (at least 100 runs)."""
    run_once = session_runner(path, profile, resolution)
    baseline = time_until_stable(run_once, max(profile.warmup, 10), max(profile.repeats, 100),
                                 max(profile.max_repeats, 100), profile.target_rse, clock=_clock(profile))
    return SpeedReference(run_once, baseline.median_ms)
