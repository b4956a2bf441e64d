"""Cream's answer in the run's archive: the board's best path, truly evaluated, labelled ``source=cream``.

A Cream-trained supernet records its board in the published checkpoint
(``pipeline.train.cream.cream_answer`` reads it back). After the search, the search stage hands
the answer to the search's evaluator and persists it into the archive; a path the search had
already evaluated keeps its measurements and is relabelled. It sits beside the stages because it
joins training's record, the evaluator and the archive.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.evaluate.interface import EvaluationResult, Evaluator, Provenance, ResultSink
from pipeline.evaluate.recording import evaluate_into
from pipeline.supernet.checkpoint import load_supernet
from pipeline.train.cream import cream_answer
from pipeline.train.files import published_supernet


def evaluate_cream_answer(evaluator: Evaluator, sink: ResultSink, run_dir: str | Path, *,
                          run_id: str) -> list[EvaluationResult]:
    """Evaluate Cream's answer of the run in ``run_dir`` into ``sink``; a run trained without Cream has none: ``[]``.

    The board is read from the checkpoint the evaluator measures (``evaluate.checkpoint`` may name
    another run's supernet), else from the run's published one.
    """
    _, extra = load_supernet(getattr(evaluator, "checkpoint", None) or published_supernet(run_dir))
    paths = cream_answer(extra)
    if not paths:
        return []
    results = evaluate_into(evaluator, sink, paths, Provenance(source="cream"), run_id=run_id)
    sink.upsert([{"arch_id": r.arch_id, "source": "cream"} for r in results if r.status == "ok"], merge=True)
    return results
