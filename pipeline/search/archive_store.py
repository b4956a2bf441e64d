"""The archive's state and persistence, independent of Ray.

``ArchiveStore`` holds one row per truly evaluated architecture of a run, keyed by
``(run_id, arch_id)``: upserting a row with a known key replaces it, so a retried evaluation never
duplicates a row. After every accepted batch it recomputes ``rank`` / ``is_pareto`` (pymoo
non-dominated sorting on the configured objectives) and rewrites ``archive.parquet`` atomically;
on construction it reloads that file, which is how a restarted archive actor recovers.

Two rules keep retries harmless: a ``failed`` row never replaces an ``ok`` row of the same
architecture, and ``upsert(rows, merge=True)`` adds columns to a known row (for example a latency
measured later for a new hardware profile) instead of replacing it. Rows of other runs found in
the file are kept as they are and written back, never dropped.
``ArchiveActor`` (``pipeline.search.archive``) wraps this class as a named Ray actor; benchmark
runs use it in-process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluate.interface import Objective
from pipeline.run_dir import RunDir
from pipeline.schema import (
    objectives_metadata,
    order_columns,
    read_metadata,
    read_parquet,
    utc_now,
    write_parquet_atomic,
)
from pipeline.search.pareto import current_round_mask, high_tradeoff_mask, nondominated_ranks, to_minimization


class ArchiveStore:
    """Rows of one run, persisted to ``run_dir/archive.parquet`` after every accepted batch."""

    def __init__(
        self,
        run_dir: str | Path,
        run_id: str,
        space: str,
        objectives: Sequence[Objective],
        config: dict[str, Any] | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.space = space
        self.objectives = list(objectives)
        self.config = config or {}
        self._rows: dict[str, dict[str, Any]] = {}
        # The rows as a DataFrame (no ranks), updated per batch instead of rebuilt from every row.
        self._table: pd.DataFrame | None = None
        self._foreign = pd.DataFrame()
        path = RunDir(self.run_dir).archive
        if path.exists():
            stored = read_parquet(path)
            own = stored["run_id"] == run_id if "run_id" in stored else pd.Series(False, index=stored.index)
            self._foreign = stored[~own].reset_index(drop=True)
            for row in stored[own].to_dict("records"):
                self._rows[row["arch_id"]] = {k: v for k, v in row.items() if k not in ("rank", "is_pareto")}

    # -- queries -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    def has(self, arch_id: str) -> bool:
        return arch_id in self._rows

    def get(self, arch_id: str) -> dict[str, Any] | None:
        """The stored row of ``arch_id`` (a copy), or None."""
        row = self._rows.get(arch_id)
        return dict(row) if row is not None else None

    def arch_ids(self) -> list[str]:
        return list(self._rows)

    def frame(self) -> pd.DataFrame:
        """All rows as a DataFrame in schema column order, with ranks."""
        if not self._rows:
            return pd.DataFrame(columns=["run_id", "arch_id", "arch", "space", "iteration", "source", "status"])
        if self._table is None:
            self._table = pd.DataFrame.from_records(list(self._rows.values()))
        return order_columns(self._with_ranks(self._table))

    def metadata(self) -> dict[str, Any]:
        """What goes into every file's schema metadata."""
        return {
            "run_id": self.run_id,
            "space": self.space,
            "objectives": objectives_metadata(self.objectives),
            "config": self.config,
        }

    # -- updates -----------------------------------------------------------------------------
    def upsert(self, rows: Iterable[dict[str, Any]], merge: bool = False) -> int:
        """Insert or replace rows by ``arch_id``; persist; return how many ids were new.

        A ``failed`` row never replaces an ``ok`` one. With ``merge`` a known row is updated
        column by column (new values win) instead of being replaced.
        """
        new = 0
        changed: dict[str, dict[str, Any]] = {}
        for row in rows:
            row = {k: v for k, v in row.items() if k not in ("rank", "is_pareto")}
            if "arch_id" not in row:
                raise ValueError("every archive row needs an 'arch_id'")
            row["run_id"] = self.run_id
            row.setdefault("space", self.space)
            row.setdefault("status", "ok")
            row.setdefault("error", "")
            row.setdefault("evaluated_at", utc_now())
            known = self._rows.get(row["arch_id"])
            if known is None:
                new += 1
            elif known.get("status") == "ok" and row["status"] != "ok":
                continue
            elif merge:
                row = {**known, **row}
            self._rows[row["arch_id"]] = row
            changed[row["arch_id"]] = row
        if changed and self._table is not None:
            kept = self._table[~self._table["arch_id"].isin(list(changed))]
            batch = pd.DataFrame.from_records(list(changed.values()))
            self._table = pd.concat([kept, batch], ignore_index=True) if len(kept) else batch
        self.persist()
        return new

    def persist(self) -> Path:
        frame = self.frame()
        if len(self._foreign):
            frame = order_columns(pd.concat([frame, self._foreign], ignore_index=True))
        return write_parquet_atomic(frame, RunDir(self.run_dir).archive, self.metadata())

    def write_front(self, iteration: int) -> Path:
        """Write the current non-dominated rows to ``fronts/iter_NNN.parquet`` and ``front.parquet``."""
        frame = self.frame()
        front = frame[frame["is_pareto"]] if "is_pareto" in frame else frame.iloc[0:0]
        front = front.assign(front_iteration=int(iteration), is_high_tradeoff=self._high_tradeoff(front))
        write_parquet_atomic(front, RunDir(self.run_dir).front_at(iteration), self.metadata())
        return write_parquet_atomic(front, RunDir(self.run_dir).front, self.metadata())

    # -- internals ---------------------------------------------------------------------------
    def _with_ranks(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Add ``rank`` and ``is_pareto``. Rank -1: not rankable (failed, an objective missing, or stale:
        measured under an older ``supernet_round`` than the newest, see ``current_round_mask``)."""
        names = [o.name for o in self.objectives]
        rank = np.full(len(frame), -1, dtype=np.int64)
        if all(name in frame.columns for name in names):
            values = frame[names].to_numpy(dtype=float, na_value=np.nan)
            usable = (frame["status"].to_numpy() == "ok") & np.isfinite(values).all(axis=1) & current_round_mask(frame)
            if usable.any():
                rank[usable] = nondominated_ranks(to_minimization(values[usable], self.objectives))
        return frame.assign(rank=rank, is_pareto=rank == 0)


    def _high_tradeoff(self, front: pd.DataFrame) -> np.ndarray:
        names = [o.name for o in self.objectives]
        return high_tradeoff_mask(to_minimization(front[names].to_numpy(dtype=float), self.objectives))


def load_archive_frame(run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read ``run_dir/archive.parquet`` and its metadata."""
    path = RunDir(run_dir).archive
    return read_parquet(path), read_metadata(path)
