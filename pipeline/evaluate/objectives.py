"""The objectives the supernet-backed (ofav2) evaluator can measure, checked against the config.

``top1``, ``params_m``, ``macs_m``, one ``latency_ms@<profile>`` per configured hardware profile,
and ``top1@<profile>`` (the accuracy after quantisation) per profile whose precision is not fp32.
Jobs call ``ofav2_objectives`` before Ray starts, so a typo fails before any work.
"""

from __future__ import annotations

from pipeline.config import HardwareProfile, PipelineConfig
from pipeline.errors import ConfigError
from pipeline.schema import LATENCY_PREFIX, TOP1_PREFIX, Objective

MEASURED_METRICS: tuple[str, ...] = ("top1", "params_m", "macs_m")


def _profile_of(name: str, profiles: dict[str, HardwareProfile]) -> HardwareProfile:
    profile = name.split("@", 1)[1]
    if profile not in profiles:
        raise ConfigError(
            f"search.objectives: {name} names an unknown hardware profile; "
            f"known profiles: {', '.join(sorted(profiles)) or '(none)'}"
        )
    return profiles[profile]


def ofav2_objectives(config: PipelineConfig) -> list[Objective]:
    """The configured search objectives, each one the ofav2 evaluator measures."""
    profiles = {profile.name: profile for profile in config.evaluate.profiles}
    objectives = [Objective(o.name, o.direction) for o in config.search.objectives]
    for objective in objectives:
        name = objective.name
        if name.startswith(LATENCY_PREFIX):
            _profile_of(name, profiles)
        elif name.startswith(TOP1_PREFIX):
            profile = _profile_of(name, profiles)
            if profile.precision == "fp32":
                raise ConfigError(
                    f"search.objectives: {name}: profile {profile.name!r} runs fp32, whose accuracy is top1; "
                    "top1@<profile> is the accuracy of an int8 or fp16 profile's deployed model"
                )
        elif name not in MEASURED_METRICS:
            raise ConfigError(
                f"search.objectives: unknown objective {name!r}; use top1, params_m, macs_m, "
                "latency_ms@<profile> or top1@<int8 or fp16 profile>"
            )
    return objectives


def latency_metrics(config: PipelineConfig) -> list[str]:
    """``latency_ms@<profile>`` for every configured profile."""
    return [f"{LATENCY_PREFIX}{profile.name}" for profile in config.evaluate.profiles]


def quantized_top1_metric(profile: str) -> str:
    """``top1@<profile>``: the validation top-1 of the model ``profile`` deploys (percent)."""
    return f"{TOP1_PREFIX}{profile}"
