"""Hardware profiles: looking them up by name, where their actors go, and their metric names.

A profile (``pipeline.config.HardwareProfile``) says where latency is measured (node labels via
Ray's ``label_selector``, or custom resources) and how (ONNX Runtime provider, threads, batch size,
resolution, warm-up, repeats); its provider chain comes from ``pipeline.onnx_runtime``. Its metrics are ``latency_ms@<name>`` (median),
``latency_p90_ms@<name>`` and ``latency_cv@<name>`` (coefficient of variation of the repeats).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pipeline.config import EvaluateConfig, HardwareProfile
from pipeline.errors import ProfileError
from pipeline.onnx_runtime import provider_chain
from pipeline.schema import LATENCY_PREFIX


def latency_metric(profile: str) -> str:
    """Name of the median latency metric of ``profile``."""
    return f"{LATENCY_PREFIX}{profile}"


def latency_metrics(profile: str) -> tuple[str, str, str]:
    """Median, p90 and CV metric names of ``profile``."""
    return latency_metric(profile), f"latency_p90_ms@{profile}", f"latency_cv@{profile}"


def resolve_profiles(config: EvaluateConfig, names: Sequence[str] | None = None) -> list[HardwareProfile]:
    """The configured profiles named in ``names`` (all when None); unknown names are an error."""
    known = {profile.name: profile for profile in config.profiles}
    if names is None:
        return list(config.profiles)
    chosen = []
    for name in names:
        if name not in known:
            listed = ", ".join(known) or "none configured"
            raise ProfileError(f"unknown hardware profile {name!r}; configured profiles: {listed}")
        chosen.append(known[name])
    return chosen


def actor_options(profile: HardwareProfile) -> dict[str, Any]:
    """``.options(...)`` that place a latency actor of ``profile`` on a matching node only."""
    options: dict[str, Any] = {"num_cpus": profile.num_cpus, "num_gpus": profile.num_gpus}
    if profile.placement.labels:
        options["label_selector"] = dict(profile.placement.labels)
    if profile.placement.resources:
        options["resources"] = dict(profile.placement.resources)
    return options


def execution_providers(profile: HardwareProfile, available: Sequence[str] | None = None) -> list[str]:
    """ONNX Runtime providers for ``profile`` (``pipeline.onnx_runtime.PROVIDERS``); ``ProfileError``
    when this node lacks the first one."""
    return provider_chain(profile.provider, available, who=f"hardware profile {profile.name!r}")


def profile_threads(profile: HardwareProfile) -> int:
    """Intra-op threads: the profile's setting, or every core this process may use."""
    if profile.threads is not None:
        return profile.threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
