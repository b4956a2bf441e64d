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
being the noise check. On CUDA / TensorRT the input and output stay on the device through IO
binding and every timed run ends with ``synchronize_outputs``, so the time covers the work, not
just the launch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
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


def time_until_stable(run_once: Callable[[], None], warmup: int, repeats: int, max_repeats: int | None = None,
                      target_rse: float = 0.0, clock: Callable[[], int] = time.perf_counter_ns) -> LatencyStats:
    """Warm up, time at least ``repeats`` runs, then more until ``median_rse < target_rse`` or the cap.

    Runs are added in blocks of a fifth of ``repeats`` (at least 5), the rule checked after each.
    ``target_rse=0`` (or ``max_repeats <= repeats``) times exactly ``repeats`` runs. ``clock``
    returns nanoseconds.
    """
    cap = max(repeats, max_repeats or repeats)
    block = max(5, repeats // 5)
    for _ in range(warmup):
        run_once()
    samples: list[float] = []
    while True:
        count = repeats - len(samples) if len(samples) < repeats else min(block, cap - len(samples))
        for _ in range(count):
            start = clock()
            run_once()
            samples.append((clock() - start) / 1e6)
        if len(samples) >= cap or median_rse(np.asarray(samples)) < target_rse:
            return LatencyStats.from_samples(np.asarray(samples))


def time_session(session, batch: np.ndarray, warmup: int, repeats: int, max_repeats: int | None = None,
                 target_rse: float = 0.0) -> LatencyStats:
    """Time ``session`` on ``batch`` (see ``time_until_stable``)."""
    return time_until_stable(_runner(session, batch), warmup, repeats, max_repeats, target_rse)


def measure_onnx(path: str | Path, profile: HardwareProfile, resolution: int, seed: int = 0) -> LatencyStats:
    """Open a fresh session on ``path`` and time it under ``profile`` at ``resolution``."""
    session = open_session(path, profile)
    shape = (profile.batch_size, 3, resolution, resolution)
    batch = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    clock = time.thread_time_ns if profile.timer == "thread_cpu" else time.perf_counter_ns
    return time_until_stable(_runner(session, batch), profile.warmup, profile.repeats, profile.max_repeats,
                             profile.target_rse, clock=clock)
