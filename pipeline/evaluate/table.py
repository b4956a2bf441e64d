"""Evaluator that looks architectures up in a NATS-Bench-format table.

The table is a CSV with columns ``arch`` (the benchmark string), ``accuracy`` (percent),
``params_m`` and ``flops_m``. Any table of that format works: nothing assumes CIFAR-10.
Every ``evaluate`` call counts one true evaluation per architecture; costs (params, FLOPs)
are offered as exact cheap metrics, as NAT treats computable costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import DataError
from pipeline.evaluate.interface import EvaluationResult, Evaluator
from pipeline.space.base import Architecture
from pipeline.space.natsbench import NATSBenchSpace

TABLE_COLUMNS: tuple[str, ...] = ("arch", "accuracy", "params_m", "flops_m")


def load_table(path: str | Path) -> pd.DataFrame:
    """Read and check a NATS-Bench-format table; one clear ``DataError`` if it is not one."""
    path = Path(path)
    expected = "a CSV with columns arch,accuracy,params_m,flops_m"
    if not path.is_file():
        raise DataError(f"table {path} does not exist; expected {expected}")
    try:
        table = pd.read_csv(path)
    except Exception as exc:  # pandas raises several parser error types
        raise DataError(f"table {path} is not readable as CSV ({type(exc).__name__}); expected {expected}") from None
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"table {path} lacks column(s) {', '.join(missing)}; expected {expected}")
    if table.empty:
        raise DataError(f"table {path} has no rows; expected {expected}")
    for column in TABLE_COLUMNS[1:]:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
            raise DataError(f"table {path} line {row}: column {column!r} is not a finite number")
        table[column] = values.astype(float)
    space = NATSBenchSpace()
    try:
        keys = [space.to_text(space.from_text(str(text))) for text in table["arch"]]
    except Exception as exc:
        raise DataError(f"table {path}: malformed arch string ({exc})") from None
    table["arch"] = keys
    if table["arch"].duplicated().any():
        raise DataError(f"table {path} has duplicate architectures, e.g. {table['arch'][table['arch'].duplicated()].iloc[0]}")
    return table.reset_index(drop=True)


class TableEvaluator(Evaluator):
    """Looks up ``top1`` (the table's accuracy), ``params_m`` and ``flops_m``."""

    cheap_metric_names = ("params_m", "flops_m")

    def __init__(self, table: pd.DataFrame | str | Path):
        self.table = table if isinstance(table, pd.DataFrame) else load_table(table)
        self.space = NATSBenchSpace()
        self._rows = {
            text: (acc, params, flops)
            for text, acc, params, flops in self.table[list(TABLE_COLUMNS)].itertuples(index=False)
        }
        self.evaluations = 0

    def _row(self, arch: Architecture) -> tuple[float, float, float]:
        text = self.space.to_text(arch)
        if text not in self._rows:
            raise DataError(f"architecture {text} is not in the table")
        return self._rows[text]

    def cheap_metrics(self, arch: Architecture) -> dict[str, float]:
        _, params, flops = self._row(arch)
        return {"params_m": params, "flops_m": flops}

    def evaluate(self, archs: Sequence[Architecture]) -> list[EvaluationResult]:
        results = []
        for arch in archs:
            accuracy, params, flops = self._row(arch)
            self.evaluations += 1
            results.append(
                EvaluationResult(
                    arch=self.space.canonical(arch),
                    arch_id=self.space.arch_id(arch),
                    metrics={"top1": accuracy, "params_m": params, "flops_m": flops},
                )
            )
        return results
