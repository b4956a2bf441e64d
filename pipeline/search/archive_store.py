"""The archive's state and persistence, independent of Ray.

``ArchiveStore`` holds one row per truly evaluated architecture of a run, keyed by
``(run_id, arch_id)``: upserting a row with a known key replaces it, so a retried evaluation never
duplicates a row. Two rules keep retries harmless: a ``failed`` row never replaces an ``ok`` row of
the same architecture, and ``upsert(rows, merge=True)`` adds columns to a known row (for example a
latency measured later for a new hardware profile) instead of replacing it. Rows of other runs
found in the file are kept as they are and written back, never dropped.

Persistence is an append log compacted into ``archive.parquet``:

- every accepted batch is written, before ``upsert`` returns, as one small Parquet part file
  ``archive_log/part-NNNNNNNN.parquet`` (atomically: temporary file, fsync, ``os.replace``). Its
  cost depends on the batch, not on the archive, so ingest does not slow down as the archive grows;
- compaction rewrites ``archive.parquet`` (every row, with ``rank`` / ``is_pareto`` from pymoo
  non-dominated sorting on the configured objectives) and then deletes the parts it folded in,
  oldest first. It runs on ``close()``, on every ``write_front`` (so the file is complete at each
  search iteration, beside its front), while the archive is small (at most ``eager_rows`` rows:
  then every batch is compacted, as cheap as before), and whenever the log holds as many rows as
  the file (and at least ``LOG_MIN_ROWS``), so restart replay stays bounded and the total
  rewrite work stays linear in the rows ingested;
- on construction the store reads ``archive.parquet`` and replays the remaining parts in order,
  which is how a restarted archive actor recovers every acknowledged batch. A crash between the
  file's replacement and the parts' deletion is harmless: what is left is a suffix of the parts,
  whose rows are already the file's.

``load_archive_frame`` reads the file plus the log, so a reader sees every acknowledged row even
between compactions. ``ArchiveActor`` (``pipeline.search.archive``) wraps this class as a named Ray
actor; benchmark runs use it in-process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic import write_parquet_atomic
from pipeline.evaluate.interface import Objective
from pipeline.schema import (
    objectives_metadata,
    order_columns,
    read_metadata,
    read_parquet,
    utc_now,
)
from pipeline.search.files import SearchFiles
from pipeline.search.pareto import current_round_mask, high_tradeoff_mask, nondominated_ranks, to_minimization

RANK_COLUMNS = ("rank", "is_pareto")
#: archives up to this many rows are compacted after every batch (a rewrite costs little there)
EAGER_ROWS = 5_000
#: the log is never compacted for its size before it holds this many rows
LOG_MIN_ROWS = 1_000
EMPTY_COLUMNS = ["run_id", "arch_id", "arch", "space", "iteration", "source", "status"]


def log_dir(run_dir: str | Path) -> Path:
    """The folder of the archive's append log, beside ``archive.parquet``."""
    return SearchFiles(run_dir).archive_log


def _part_number(path: Path) -> int:
    return int(path.stem.split("-", 1)[1])


def log_parts(run_dir: str | Path) -> list[Path]:
    """The log's part files, oldest first."""
    folder = log_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(folder.glob("part-*.parquet"), key=_part_number)


def _stored_rows(run_dir: str | Path) -> tuple[pd.DataFrame, list[Path]]:
    """``archive.parquet`` with the log replayed over it (last write of a key wins), and the parts read."""
    path = SearchFiles(run_dir).archive
    parts = log_parts(run_dir)
    frames = [read_parquet(path)] if path.exists() else []
    frames += [read_parquet(part) for part in parts]
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame(), parts
    stored = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if "run_id" not in stored:
        stored = stored.assign(run_id=None)
    if parts:
        stored = stored.drop_duplicates(["run_id", "arch_id"], keep="last").reset_index(drop=True)
    return stored, parts


def rank_rows(frame: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """``frame`` with ``rank`` and ``is_pareto``. Rank -1: not rankable (failed, an objective missing,
    or stale: measured under an older ``supernet_round`` than the newest, see ``current_round_mask``)."""
    names = [o.name for o in objectives]
    rank = np.full(len(frame), -1, dtype=np.int64)
    if len(frame) and all(name in frame.columns for name in names):
        values = frame[names].to_numpy(dtype=float, na_value=np.nan)
        usable = (frame["status"].to_numpy() == "ok") & np.isfinite(values).all(axis=1) & current_round_mask(frame)
        if usable.any():
            rank[usable] = nondominated_ranks(to_minimization(values[usable], objectives))
    return frame.assign(rank=rank, is_pareto=rank == 0)


class ArchiveStore:
    """Rows of one run, persisted (append log + compaction) before every batch is acknowledged."""

    def __init__(
        self,
        run_dir: str | Path,
        run_id: str,
        space: str,
        objectives: Sequence[Objective],
        config: dict[str, Any] | None = None,
        eager_rows: int = EAGER_ROWS,
    ):
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.space = space
        self.objectives = list(objectives)
        self.config = config or {}
        self.eager_rows = eager_rows
        stored, self._parts = _stored_rows(self.run_dir)
        own = (stored["run_id"] == run_id) if len(stored) else pd.Series(dtype=bool)
        self._foreign = stored[~own].reset_index(drop=True) if len(stored) else stored
        table = stored[own].drop(columns=[c for c in RANK_COLUMNS if c in stored]) if len(stored) else stored
        # own rows as a table indexed by arch_id, plus the rows changed since it was last rebuilt
        self._table = table.set_index("arch_id", drop=False) if len(table) else pd.DataFrame()
        self._pending: dict[str, dict[str, Any]] = {}
        self._ids: dict[str, None] = dict.fromkeys(self._table.index) if len(self._table) else {}
        self._ranked: pd.DataFrame | None = None
        self._log_rows = 0  # rows written to the log since the last compaction
        self._compacted_rows = len(self._ids)
        self._next_part = _part_number(self._parts[-1]) + 1 if self._parts else 1

    # -- queries -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def has(self, arch_id: str) -> bool:
        return arch_id in self._ids

    def get(self, arch_id: str) -> dict[str, Any] | None:
        """The stored row of ``arch_id`` (a copy), or None."""
        return self.get_many([arch_id]).get(arch_id)

    def get_many(self, arch_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored rows (copies) of those ``arch_ids`` the archive holds."""
        wanted = [key for key in dict.fromkeys(arch_ids) if key in self._ids]
        found = {key: dict(self._pending[key]) for key in wanted if key in self._pending}
        rest = [key for key in wanted if key not in found]
        if rest:
            for row in self._table.loc[rest].to_dict("records"):
                found[row["arch_id"]] = row
        return {key: found[key] for key in wanted}

    def arch_ids(self) -> list[str]:
        return list(self._ids)

    def frame(self) -> pd.DataFrame:
        """All rows as a DataFrame in schema column order, with ranks."""
        if not self._ids:
            return pd.DataFrame(columns=EMPTY_COLUMNS)
        if self._ranked is None:
            self._ranked = order_columns(rank_rows(self._rows_table().reset_index(drop=True), self.objectives))
        return self._ranked.copy()

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
        rows = [{k: v for k, v in row.items() if k not in RANK_COLUMNS} for row in rows]
        if any("arch_id" not in row for row in rows):
            raise ValueError("every archive row needs an 'arch_id'")
        known = self.get_many(row["arch_id"] for row in rows)
        new = 0
        changed: dict[str, dict[str, Any]] = {}
        for row in rows:
            row["run_id"] = self.run_id
            row.setdefault("space", self.space)
            row.setdefault("status", "ok")
            row.setdefault("error", "")
            row.setdefault("evaluated_at", utc_now())
            key = row["arch_id"]
            before = changed.get(key) or known.get(key)
            if before is None:
                new += 1
            elif before.get("status") == "ok" and row["status"] != "ok":
                continue
            elif merge:
                row = {**before, **row}
            changed[key] = row
        if changed:
            self._pending.update(changed)
            self._ids.update(dict.fromkeys(changed))
            self._ranked = None
            self._append(list(changed.values()))
        return new

    def persist(self) -> Path:
        """Compact now: rewrite ``archive.parquet`` with every row and empty the log."""
        return self.compact()

    def compact(self) -> Path:
        """Fold the log into ``archive.parquet`` (atomic rewrite), then delete the folded parts."""
        frame = self.frame()
        if len(self._foreign):
            frame = order_columns(pd.concat([frame, self._foreign], ignore_index=True))
        path = write_parquet_atomic(frame, SearchFiles(self.run_dir).archive, self.metadata())
        for part in self._parts:  # oldest first: what a crash leaves is a suffix, already in the file
            part.unlink(missing_ok=True)
        self._parts = []
        self._log_rows, self._compacted_rows = 0, len(self._ids)
        return path

    def close(self) -> Path:
        """Compact (``archive.parquet`` then holds every row and the log is empty)."""
        return self.compact()

    def write_front(self, iteration: int) -> Path:
        """Compact, then write the non-dominated rows to ``fronts/iter_NNN.parquet`` and ``front.parquet``."""
        if self._parts or not SearchFiles(self.run_dir).archive.exists():
            self.compact()
        frame = self.frame()
        front = frame[frame["is_pareto"]] if "is_pareto" in frame else frame.iloc[0:0]
        front = front.assign(front_iteration=int(iteration), is_high_tradeoff=self._high_tradeoff(front))
        write_parquet_atomic(front, SearchFiles(self.run_dir).front_at(iteration), self.metadata())
        return write_parquet_atomic(front, SearchFiles(self.run_dir).front, self.metadata())

    # -- internals ---------------------------------------------------------------------------
    def _rows_table(self) -> pd.DataFrame:
        """Own rows (no ranks), indexed by arch_id, with the pending changes folded in."""
        if self._pending:
            batch = pd.DataFrame.from_records(list(self._pending.values()))
            batch.index = batch["arch_id"].to_numpy()
            if len(self._table):
                kept = self._table[~self._table.index.isin(list(self._pending))]
                self._table = pd.concat([kept, batch]) if len(kept) else batch
            else:
                self._table = batch
            self._pending = {}
        return self._table

    def _append(self, rows: list[dict[str, Any]]) -> None:
        """Make ``rows`` durable: a log part, or a compaction while that is cheap."""
        if len(self._ids) <= self.eager_rows:
            self.compact()
            return
        part = log_dir(self.run_dir) / f"part-{self._next_part:08d}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(pd.DataFrame.from_records(rows), part, self.metadata())
        self._parts.append(part)
        self._next_part += 1
        self._log_rows += len(rows)
        if self._log_rows >= max(self._compacted_rows, self.eager_rows, LOG_MIN_ROWS):
            self.compact()

    def _high_tradeoff(self, front: pd.DataFrame) -> np.ndarray:
        names = [o.name for o in self.objectives]
        return high_tradeoff_mask(to_minimization(front[names].to_numpy(dtype=float), self.objectives))


def load_archive_frame(run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every acknowledged row (``archive.parquet`` with the append log replayed) and the metadata.

    Without log parts this is the file as written. With parts, ranks are recomputed per run.
    """
    path = SearchFiles(run_dir).archive
    parts = log_parts(run_dir)
    if not parts:
        return read_parquet(path), read_metadata(path)
    metadata = read_metadata(path) if path.exists() else read_metadata(parts[-1])
    stored, _ = _stored_rows(run_dir)
    objectives = [Objective(o["name"], o["direction"]) for o in metadata.get("objectives", [])]
    stored = stored.drop(columns=[c for c in RANK_COLUMNS if c in stored])
    ranked = [rank_rows(group, objectives) for _, group in stored.groupby("run_id", sort=False, dropna=False)]
    return order_columns(pd.concat(ranked, ignore_index=True)), metadata
