"""The evaluator interface that search and generation see.

An evaluator maps architectures to named objectives (``top1``, ``params_m``, ``macs_m``,
``latency_ms@<profile>``, ...). Objectives it can compute exactly and cheaply (params, MACs,
a table's costs) are offered by ``cheap_metrics`` and never count as a true evaluation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from pipeline.schema import Direction, EvaluationResult, Objective  # noqa: F401 - the interface's types
from pipeline.space.base import Architecture, SearchSpace


class Evaluator(ABC):
    """Truly evaluates architectures of ``space``; counts every true evaluation."""

    space: SearchSpace
    evaluations: int = 0
    #: names of metrics that ``cheap_metrics`` computes exactly without a true evaluation
    cheap_metric_names: tuple[str, ...] = ()
    #: True when ``evaluate`` writes the result rows to the run's archive itself; it then takes the
    #: provenance keywords ``iteration``, ``source`` and ``predicted_top1`` (one value per architecture)
    persists_rows: bool = False

    @abstractmethod
    def evaluate(self, archs: Sequence[Architecture]) -> list[EvaluationResult]:
        """Truly evaluate ``archs``; one result per architecture, in order."""

    def cheap_metrics(self, arch: Architecture) -> dict[str, float]:
        """Exact cheap metrics of ``arch`` (subset of ``cheap_metric_names``); not counted."""
        return {}
