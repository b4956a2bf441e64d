"""Timing an ONNX model with ONNX Runtime under a hardware profile's fixed settings.

Every figure is tied to its settings: execution provider, ``intra_op_num_threads`` (one
inter-op thread, sequential execution), graph optimisation level ``ORT_ENABLE_ALL``, batch size and
resolution; the session comes from ``pipeline.onnx_runtime.ort_session``, the one factory. The
model is run ``warmup`` times untimed, then ``repeats`` times timed one by one with ``time.perf_counter_ns``; the result is the median, the 90th percentile and the coefficient
of variation (population standard deviation / mean) of the repeats, the last being the noise
check. On CUDA / TensorRT the input and output stay on the device through IO binding and every
timed run ends with ``synchronize_outputs``, so the time covers the work, not just the launch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import HardwareProfile
from pipeline.evaluate.profiles import latency_metrics, profile_threads
from pipeline.onnx_runtime import ort_session

GRAPH_OPTIMIZATION = "all"  # ORT_ENABLE_ALL


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the timed repeats of one model, in milliseconds."""

    median_ms: float
    p90_ms: float
    cv: float
    repeats: int

    @classmethod
    def from_samples(cls, samples_ms: np.ndarray) -> LatencyStats:
        samples_ms = np.asarray(samples_ms, dtype=float)
        mean = float(samples_ms.mean())
        return cls(
            median_ms=float(np.median(samples_ms)),
            p90_ms=float(np.percentile(samples_ms, 90)),
            cv=float(samples_ms.std() / mean) if mean > 0 else 0.0,
            repeats=int(samples_ms.size),
        )

    def metrics(self, profile: str) -> dict[str, float]:
        """As ``latency_ms@p``, ``latency_p90_ms@p`` and ``latency_cv@p``."""
        median, p90, cv = latency_metrics(profile)
        return {median: self.median_ms, p90: self.p90_ms, cv: self.cv}


def open_session(path: str | Path, profile: HardwareProfile):
    """An ``InferenceSession`` with the profile's provider and fixed thread / optimisation settings."""
    return ort_session(path, profile.provider, profile_threads(profile), GRAPH_OPTIMIZATION, "sequential",
                       who=f"hardware profile {profile.name!r}")


def time_session(session, batch: np.ndarray, warmup: int, repeats: int) -> LatencyStats:
    """Warm up, then time ``repeats`` single runs of ``session`` on ``batch``."""
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

    for _ in range(warmup):
        run_once()
    samples = np.empty(repeats, dtype=float)
    for i in range(repeats):
        start = time.perf_counter_ns()
        run_once()
        samples[i] = (time.perf_counter_ns() - start) / 1e6
    return LatencyStats.from_samples(samples)


def measure_onnx(path: str | Path, profile: HardwareProfile, resolution: int, seed: int = 0) -> LatencyStats:
    """Open a fresh session on ``path`` and time it under ``profile`` at ``resolution``."""
    session = open_session(path, profile)
    shape = (profile.batch_size, 3, resolution, resolution)
    batch = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return time_session(session, batch, profile.warmup, profile.repeats)
