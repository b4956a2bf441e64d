"""The evaluator interface that search and generation see, and the sink that persists results.

An evaluator maps architectures to named objectives (``top1``, ``params_m``, ``macs_m``,
``latency_ms@<profile>``, ...) and returns them; it never writes rows. Objectives it can compute
exactly and cheaply (params, MACs, a table's costs) are offered by ``cheap_metrics`` and never
count as a true evaluation. ``evaluate_streaming`` hands each newly measured result to a callback
as soon as it is complete, which is how results reach a ``ResultSink`` (the run's archive) while
the rest of a batch is still running (``pipeline.evaluate.recording``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pipeline.schema import Direction, EvaluationResult, Objective, Provenance
from pipeline.space.base import Architecture, SearchSpace

__all__ = ["Direction", "EvaluationResult", "Evaluator", "Objective", "OnMeasured", "Provenance", "ResultSink"]

#: called with each result that holds a new measurement, as soon as it is complete
OnMeasured = Callable[[EvaluationResult], None]


class Evaluator(ABC):
    """Truly evaluates architectures of ``space``; counts every true evaluation."""

    space: SearchSpace
    evaluations: int = 0
    #: names of metrics that ``cheap_metrics`` computes exactly without a true evaluation
    cheap_metric_names: tuple[str, ...] = ()

    @abstractmethod
    def evaluate(self, archs: Sequence[Architecture]) -> list[EvaluationResult]:
        """Truly evaluate ``archs``; one result per architecture, in order."""

    def evaluate_streaming(self, archs: Sequence[Architecture], on_measured: OnMeasured) -> list[EvaluationResult]:
        """``evaluate``, handing ``on_measured`` every result that was measured by this call.

        By default every result counts as measured and is handed over once the batch is done; an
        evaluator that reuses earlier measurements or finishes architectures one by one overrides it.
        """
        results = self.evaluate(archs)
        for result in results:
            on_measured(result)
        return results

    def cheap_metrics(self, arch: Architecture) -> dict[str, float]:
        """Exact cheap metrics of ``arch`` (subset of ``cheap_metric_names``); not counted."""
        return {}


class ResultSink(Protocol):
    """Where evaluated rows are persisted: ``ArchiveStore`` or a client of the archive actor.

    ``merge`` updates a known row column by column instead of replacing it.
    """

    def upsert(self, rows: Sequence[dict[str, Any]], merge: bool = False) -> Any: ...
