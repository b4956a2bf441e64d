"""Hardware profiles, ONNX Runtime timing and the latency predictor."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import EvaluateConfig, HardwareProfile
from pipeline.errors import ProfileError
from pipeline.evaluate.latency import LatencyStats
from pipeline.evaluate.predictor import LatencyPredictor
from pipeline.evaluate.profiles import actor_options, execution_providers, latency_metrics, resolve_profiles
from pipeline.space.ofav2 import OFAv2Space

TINY = {"stage_widths": (8, 8, 16, 16, 24), "resolutions": (16, 20, 24)}


def test_unknown_profile_name_is_a_profile_error():
    settings = EvaluateConfig()
    assert [p.name for p in resolve_profiles(settings)] == ["local_all_threads", "local_one_thread"]
    assert resolve_profiles(settings, ["local_one_thread"])[0].threads == 1
    with pytest.raises(ProfileError, match="unknown hardware profile 'gpu_x'.*local_all_threads"):
        resolve_profiles(settings, ["gpu_x"])


def test_missing_execution_provider_is_a_profile_error():
    cuda = HardwareProfile(name="t4", provider="cuda")
    with pytest.raises(ProfileError, match="t4.*CUDAExecutionProvider"):
        execution_providers(cuda, available=["CPUExecutionProvider"])
    assert execution_providers(cuda, available=["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = HardwareProfile(name="trt", provider="tensorrt")
    assert execution_providers(trt, ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])[0] \
        == "TensorrtExecutionProvider"


def test_placement_becomes_label_selector_and_resources():
    profile = HardwareProfile.model_validate({
        "name": "arm", "placement": {"labels": {"hw": "arm64"}, "resources": {"latency_arm": 0.5}},
        "num_cpus": 2})
    assert actor_options(profile) == {"num_cpus": 2.0, "num_gpus": 0.0, "label_selector": {"hw": "arm64"},
                                      "resources": {"latency_arm": 0.5}}
    assert "label_selector" not in actor_options(HardwareProfile(name="anywhere"))


def test_latency_stats_median_p90_cv():
    stats = LatencyStats.from_samples(np.array([1.0, 2.0, 3.0, 4.0, 10.0]))
    assert stats.median_ms == 3.0 and stats.p90_ms == pytest.approx(7.6)
    assert stats.cv == pytest.approx(np.std([1, 2, 3, 4, 10]) / 4.0)
    assert stats.metrics("cpu") == dict(zip(latency_metrics("cpu"), [3.0, pytest.approx(7.6), stats.cv], strict=True))


def test_predictor_learns_a_structural_latency_law():
    space = OFAv2Space(**TINY)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(160)]

    def law(arch):  # a per-block cost that grows with kernel, expand and resolution, plus a fixed cost
        used = space.used_blocks(arch)
        work = sum(k * k * e for k, e, u in zip(arch["kernels"], arch["expands"], used, strict=True) if u)
        return 0.2 + 2e-5 * work * arch["resolution"] ** 2 + 0.01 * sum(used)

    latencies = np.array([law(a) for a in archs]) * rng.lognormal(0.0, 0.02, len(archs))
    predictor = LatencyPredictor.fit(space, archs[:120], latencies[:120])
    assert predictor.within_fraction(archs[120:], latencies[120:], tol=0.10) >= 0.9
    constant = np.abs(np.median(latencies[:120]) - latencies[120:]) / latencies[120:]
    assert np.median(predictor.relative_errors(archs[120:], latencies[120:])) < np.median(constant) / 3
    with pytest.raises(ValueError, match="at least 3"):
        LatencyPredictor.fit(space, archs[:2], latencies[:2])
