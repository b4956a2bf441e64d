"""``ray_session``: Ray is shut down on exit only when the block itself connected it."""

from __future__ import annotations

import pytest

from pipeline import runtime
from pipeline.config import RayConfig


def _recorder(monkeypatch, owns: bool) -> tuple[list, list]:
    import ray

    calls: list[tuple] = []
    shutdowns: list[bool] = []
    monkeypatch.setattr(runtime, "connect_ray", lambda num_cpus, namespace: calls.append((num_cpus, namespace)) or owns)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(True))
    return calls, shutdowns


@pytest.mark.parametrize("owns", [True, False])
def test_shutdown_only_when_this_block_connected(monkeypatch, owns):
    calls, shutdowns = _recorder(monkeypatch, owns)
    with runtime.ray_session(RayConfig(num_cpus=3, namespace="ns")) as started:
        assert started is owns and not shutdowns
    assert calls == [(3, "ns")] and shutdowns == ([True] if owns else [])


def test_shutdown_on_error_and_num_cpus_override(monkeypatch):
    calls, shutdowns = _recorder(monkeypatch, True)
    with pytest.raises(RuntimeError), runtime.ray_session(RayConfig(num_cpus=1), num_cpus=4):
        raise RuntimeError("boom")
    assert calls == [(4, "nas")] and shutdowns == [True]


def test_disabled_session_starts_nothing(monkeypatch):
    calls, shutdowns = _recorder(monkeypatch, True)
    with runtime.ray_session(RayConfig(), enabled=False) as started:
        assert started is False
    assert calls == [] and shutdowns == []


def test_already_initialised_ray_is_left_running(ray_local):
    with runtime.ray_session(RayConfig()) as started:
        assert started is False
    assert ray_local.is_initialized()
