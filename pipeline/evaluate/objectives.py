"""The objectives the supernet-backed (ofav2) evaluator can measure, checked against the config.

``top1``, ``params_m``, ``macs_m`` and one ``latency_ms@<profile>`` per configured hardware
profile. Jobs call ``ofav2_objectives`` before Ray starts, so a typo fails before any work.
"""

from __future__ import annotations

from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError
from pipeline.schema import LATENCY_PREFIX, Objective

MEASURED_METRICS: tuple[str, ...] = ("top1", "params_m", "macs_m")


def ofav2_objectives(config: PipelineConfig) -> list[Objective]:
    """The configured search objectives, each one the ofav2 evaluator measures."""
    profiles = {profile.name for profile in config.evaluate.profiles}
    objectives = [Objective(o.name, o.direction) for o in config.search.objectives]
    for objective in objectives:
        name = objective.name
        if name.startswith(LATENCY_PREFIX):
            if name.split("@", 1)[1] not in profiles:
                raise ConfigError(
                    f"search.objectives: {name} names an unknown hardware profile; "
                    f"known profiles: {', '.join(sorted(profiles)) or '(none)'}"
                )
        elif name not in MEASURED_METRICS:
            raise ConfigError(
                f"search.objectives: unknown objective {name!r}; use top1, params_m, macs_m or latency_ms@<profile>"
            )
    return objectives


def latency_metrics(config: PipelineConfig) -> list[str]:
    """``latency_ms@<profile>`` for every configured profile."""
    return [f"{LATENCY_PREFIX}{profile.name}" for profile in config.evaluate.profiles]
