"""Hardware profiles, ONNX Runtime timing and the latency predictor."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import EvaluateConfig, HardwareProfile
from pipeline.errors import ProfileError
from pipeline.evaluate.latency import LatencyStats, median_rse, time_until_stable
from pipeline.evaluate.predictor import LatencyPredictor, held_out_error
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


def _law(space, arch):  # a per-block cost that grows with kernel, expand and resolution, plus a fixed cost
    used = space.used_blocks(arch)
    work = sum(k * k * e for k, e, u in zip(arch["kernels"], arch["expands"], used, strict=True) if u)
    return 0.2 + 2e-5 * work * arch["resolution"] ** 2 + 0.01 * sum(used)


def _measured(count: int, noise: float, seed: int = 0):
    space = OFAv2Space(**TINY)
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(count)]
    return space, archs, np.array([_law(space, a) for a in archs]) * rng.lognormal(0.0, noise, count)


def test_predictor_learns_a_structural_latency_law():
    space, archs, latencies = _measured(160, 0.02)
    predictor = LatencyPredictor.fit(space, archs[:120], latencies[:120])
    assert predictor.within_fraction(archs[120:], latencies[120:], tol=0.10) >= 0.9
    constant = np.abs(np.median(latencies[:120]) - latencies[120:]) / latencies[120:]
    assert np.median(predictor.relative_errors(archs[120:], latencies[120:])) < np.median(constant) / 3
    with pytest.raises(ValueError, match="at least 3"):
        LatencyPredictor.fit(space, archs[:2], latencies[:2])


class _FakeClock:
    """A clock that each run advances by the next drawn duration (ms), so timing is deterministic."""

    def __init__(self, durations_ms: np.ndarray):
        self.durations, self.now, self.runs = iter(durations_ms), 0, 0

    def run(self) -> None:
        self.now += int(next(self.durations) * 1e6)
        self.runs += 1

    def __call__(self) -> int:
        return self.now


def test_median_rse_is_the_normal_approximation_from_the_mad():
    rng = np.random.default_rng(0)
    samples = rng.normal(10.0, 0.5, 4000)
    assert median_rse(samples) == pytest.approx(1.2533 * 0.5 / np.sqrt(4000) / 10.0, rel=0.1)
    with_outliers = np.concatenate([samples, np.full(40, 1e3)])  # 1% slow runs barely move it
    assert median_rse(with_outliers) == pytest.approx(median_rse(samples), rel=0.05)
    assert median_rse(np.array([1.0, 2.0])) == float("inf")


@pytest.mark.parametrize("noise, stops_at", [(0.001, "min"), (0.08, "between"), (2.0, "cap")])
def test_timing_stops_once_the_running_median_is_stable(noise, stops_at):
    rng = np.random.default_rng(1)
    clock = _FakeClock(5.0 * rng.lognormal(0.0, noise, 10_000))
    stats = time_until_stable(clock.run, warmup=3, repeats=20, max_repeats=600, target_rse=0.01, clock=clock)
    assert clock.runs == 3 + stats.repeats
    if stops_at == "min":
        assert stats.repeats == 20 and stats.rse < 0.01
    elif stops_at == "between":
        assert 20 < stats.repeats < 600 and stats.rse < 0.01
    else:
        assert stats.repeats == 600 and stats.rse >= 0.01
    assert stats.median_ms == pytest.approx(5.0, rel=max(0.05, 3 * stats.rse))
    exact = time_until_stable(_FakeClock(np.full(50, 2.0)).run, 0, 30)  # no rule: exactly ``repeats``
    assert exact.repeats == 30


def test_session_options_fix_every_setting_of_the_profile():
    import onnxruntime as ort

    from pipeline.onnx_runtime import session_options

    options = session_options(1, "basic", "parallel", allow_spinning=False)
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(2, allow_spinning=True).get_session_config_entry("session.intra_op.allow_spinning") == "1"
    with pytest.raises(ProfileError, match="execution mode 'fast'"):
        session_options(1, execution_mode="fast")


def test_held_out_error_scores_every_architecture_once_on_a_refit():
    space, archs, latencies = _measured(100, 0.02)
    mape, within = held_out_error(space, archs, latencies, folds=5)
    assert within >= 0.9 and mape < 0.06
    _, _, noisy = _measured(100, 0.5)  # a law the features cannot explain is scored as bad
    noisy_mape, noisy_within = held_out_error(space, archs, noisy, folds=5)
    assert noisy_within < 0.4 and noisy_mape > 3 * mape
    assert np.isnan(held_out_error(space, archs[:3], latencies[:3])[0])  # a training part needs 3


def test_measured_predictor_reports_its_held_out_error_under_the_history_names():
    from pipeline.evaluate.ofav2_evaluator import MeasuredLatencyPredictor

    space, archs, latencies = _measured(60, 0.02)

    class Measured:  # the evaluator's side: what has been measured, and how often accuracy was
        evaluations = 0

        def __init__(self):
            self.space, self.calls = space, 0

        def measured_latencies(self, profile):
            self.calls += 1
            return archs, list(latencies), [{"macs_m": 1.0} for _ in archs]

    evaluator = Measured()
    predictor = MeasuredLatencyPredictor(evaluator, "cpu")
    error = predictor.held_out_error()
    assert set(error) == {"latency_pred_mape@cpu", "latency_pred_within10@cpu"}
    assert error["latency_pred_within10@cpu"] >= 0.9 and 0 < error["latency_pred_mape@cpu"] < 0.06
    assert predictor.held_out_error() == error and evaluator.calls == 1  # cached until more is measured
    evaluator.evaluations = 5
    predictor.held_out_error()
    assert evaluator.calls == 2


def test_thread_cpu_timer_needs_one_cpu_thread():
    assert HardwareProfile(name="t", threads=1, timer="thread_cpu").timer == "thread_cpu"
    for settings in ({"threads": None}, {"threads": 2}, {"threads": 1, "provider": "cuda"}):
        with pytest.raises(ValueError, match="thread_cpu"):
            HardwareProfile(name="t", timer="thread_cpu", **settings)


class _MachineClock:
    """A fake clock for two models on one machine whose speed can change: a run of a model that
    costs ``c`` ms at full speed advances the clock by ``c * slowdown``."""

    def __init__(self) -> None:
        self.now, self.slowdown = 0, 1.0

    def runner(self, cost_ms: float):
        def run_once() -> None:
            self.now += int(cost_ms * self.slowdown * 1e6)
        return run_once

    def __call__(self) -> int:
        return self.now


def test_speed_reference_cancels_a_slower_machine():
    """Timed in a spell where the machine runs 1.5x slower, a 2 ms model reads 3 ms; the reference
    (1 ms at full speed, its baseline) reads 1.5 ms in the same spell, which scales it back to 2 ms."""
    from pipeline.evaluate.latency import SpeedReference

    clock = _MachineClock()
    candidate, reference = clock.runner(2.0), clock.runner(1.0)
    baseline = time_until_stable(reference, 2, 20, clock=clock).median_ms
    assert baseline == pytest.approx(1.0)
    clock.slowdown = 1.5
    raw = time_until_stable(candidate, 2, 20, clock=clock)
    corrected = time_until_stable(candidate, 2, 20, clock=clock, reference=SpeedReference(reference, baseline))
    assert raw.median_ms == pytest.approx(3.0)
    assert corrected.median_ms == pytest.approx(2.0) and corrected.p90_ms == pytest.approx(2.0)
    assert corrected.repeats == raw.repeats == 20 and corrected.cv == raw.cv


def test_latency_worker_with_a_speed_reference_times_it_once_and_scales_by_it(tmp_path):
    from pipeline.config import HardwareProfile
    from pipeline.evaluate.actors import LatencyWorker

    profile = HardwareProfile(name="ref", threads=1, warmup=2, repeats=10, max_repeats=10, speed_reference=True)
    worker = LatencyWorker(OFAv2Space(**TINY).options(), 4, profile.model_dump(mode="json"), str(tmp_path))
    archs = [worker.space.sample(np.random.default_rng(seed)) for seed in (1, 2)]
    first = worker.run(archs[0])["metrics"]["latency_ms@ref"]
    reference = worker.reference()
    assert reference is not None and reference.baseline_ms > 0 and first > 0
    worker.run(archs[1])
    assert worker.reference() is reference  # built and timed once per worker
    plain = LatencyWorker(OFAv2Space(**TINY).options(), 4, profile.model_copy(update={"speed_reference": False})
                          .model_dump(mode="json"), str(tmp_path))
    assert plain.reference() is None
