"""The files a search writes into the directory it is given.

The stage layer hands the search one directory; this module owns the names of what the search
keeps there (the archive and its append log, the fronts, the history and the engine state), and
``pipeline.run_dir.RunDir`` exposes the same names to readers of a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SearchFiles:
    """The search's files under ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def archive(self) -> Path:
        """Every truly evaluated architecture."""
        return self.root / "archive.parquet"

    @property
    def archive_log(self) -> Path:
        """The archive's append log (part files not yet compacted into ``archive``)."""
        return self.root / "archive_log"

    @property
    def front(self) -> Path:
        """The final non-dominated rows."""
        return self.root / "front.parquet"

    @property
    def fronts_dir(self) -> Path:
        return self.root / "fronts"

    def front_at(self, iteration: int) -> Path:
        """The front after search iteration ``iteration`` (``fronts/iter_NNN.parquet``)."""
        return self.fronts_dir / f"iter_{int(iteration):03d}.parquet"

    @property
    def history(self) -> Path:
        """One row per search iteration."""
        return self.root / "search_history.parquet"

    @property
    def state(self) -> Path:
        """The engine's resumable state."""
        return self.root / "search_state.json"
