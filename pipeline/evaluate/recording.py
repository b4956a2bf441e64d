"""Results into a sink: each evaluated architecture becomes one archive row with its provenance.

``ResultRecorder`` is the callback that ``Evaluator.evaluate_streaming`` hands measured results
to: it builds the row (``pipeline.schema.result_row``) with the architecture's ``Provenance`` and
writes rows to the ``ResultSink`` (merged into known rows) in batches of ``batch_size``, so a long
batch persists what is finished while the rest runs; without a batch size, once, at ``flush``. A ``status`` rule (the search engine's: every
objective needs a value) decides the row's status before it is written, so a row is written once,
already right. ``evaluate_into`` is the whole round trip for one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline.evaluate.interface import EvaluationResult, Evaluator, Provenance, ResultSink
from pipeline.schema import result_row
from pipeline.space.base import Architecture, SearchSpace

MISSING_OBJECTIVE = "evaluator returned no value for an objective"
#: iteration 0, source ``search``, no prediction
DEFAULT_PROVENANCE = Provenance()


class ResultRecorder:
    """Builds a row per measured result and writes them to ``sink`` in batches (see the module docstring)."""

    def __init__(
        self,
        sink: ResultSink,
        *,
        run_id: str,
        space: SearchSpace,
        provenance: Provenance | Mapping[str, Provenance] = DEFAULT_PROVENANCE,
        status: Callable[[EvaluationResult], str] | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.sink, self.run_id, self.space = sink, run_id, space
        self.provenance = provenance
        self.status = status
        self.batch_size = batch_size
        self._rows: list[dict[str, Any]] = []

    def provenance_of(self, arch_id: str) -> Provenance:
        if isinstance(self.provenance, Provenance):
            return self.provenance
        return self.provenance[arch_id]

    def row(self, result: EvaluationResult) -> dict[str, Any]:
        """``result`` as an archive row, its status decided by the status rule."""
        origin = self.provenance_of(result.arch_id)
        row = result_row(result, run_id=self.run_id, space=self.space.name, arch_text=self.space.to_text(result.arch),
                         iteration=origin.iteration, source=origin.source, predicted_top1=origin.predicted_top1)
        if self.status is not None and result.status == "ok" and self.status(result) != "ok":
            row.update(status="failed", error=MISSING_OBJECTIVE)
        return row

    def __call__(self, result: EvaluationResult) -> None:
        self._rows.append(self.row(result))
        if self.batch_size is not None and len(self._rows) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Write the rows not written yet."""
        if self._rows:
            rows, self._rows = self._rows, []
            self.sink.upsert(rows, merge=True)


def evaluate_into(
    evaluator: Evaluator,
    sink: ResultSink,
    archs: Sequence[Architecture],
    provenance: Provenance = DEFAULT_PROVENANCE,
    *,
    run_id: str,
    batch_size: int | None = None,
) -> list[EvaluationResult]:
    """Evaluate ``archs`` and persist what was measured into ``sink`` with ``provenance``; the results."""
    recorder = ResultRecorder(sink, run_id=run_id, space=evaluator.space, provenance=provenance, batch_size=batch_size)
    results = evaluator.evaluate_streaming(archs, recorder)
    recorder.flush()
    return results
