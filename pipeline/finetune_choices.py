"""Which architectures the fine-tune stage trains: from the front, the generator, or the config.

It reads the run's results (``pipeline.results``), so it sits beside the stages, above ``train``,
and the stage hands fine-tuning the choice (``pipeline.train.finetune.finetune_run``'s ``choose``).

``finetune.source`` picks the candidates (``front``: the final front; ``high_tradeoff``: its
high-tradeoff points, ``pymoo.mcdm.high_tradeoff``; ``generated``; ``explicit``); at most ``finetune.max_archs`` of them are kept, spread
evenly along the first cost column (always the cheapest and the costliest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import results
from pipeline.config import FinetuneConfig
from pipeline.errors import ConfigError, ResultsError
from pipeline.space.base import Architecture, SearchSpace


def spread_along(frame: pd.DataFrame, cost: str, count: int) -> pd.DataFrame:
    """``count`` rows spread evenly along ``cost`` (always the cheapest and the costliest)."""
    frame = frame.sort_values(cost).drop_duplicates("arch_id")
    if len(frame) <= count:
        return frame
    picks = np.unique(np.round(np.linspace(0, len(frame) - 1, count)).astype(int))
    return frame.iloc[picks]


def candidate_rows(settings: FinetuneConfig, run_dir: Path) -> pd.DataFrame:
    """The rows ``finetune.source`` names, successful ones only."""
    if settings.source == "generated":
        frame = results.generated(run_dir)
        return frame[frame["meets_budget"].astype(bool)]
    frame = results.high_tradeoff(run_dir) if settings.source == "high_tradeoff" else results.front(run_dir)
    return frame[frame["status"] == "ok"] if "status" in frame else frame


def finetune_choices(settings: FinetuneConfig, run_dir: Path, space: SearchSpace) -> list[Architecture]:
    """The architectures to fine-tune."""
    if settings.source == "explicit":
        if not settings.archs:
            raise ConfigError("finetune.source is 'explicit' but finetune.archs is empty")
        return [space.from_text(text) for text in settings.archs]
    frame = candidate_rows(settings, run_dir)
    if frame.empty:
        raise ResultsError(f"no architectures to fine-tune in {run_dir} (finetune.source={settings.source})")
    cost = next((c for c in ("params_m", "macs_m") if c in frame), None)
    chosen = spread_along(frame, cost, settings.max_archs) if cost else frame.head(settings.max_archs)
    return [space.from_text(text) for text in chosen["arch"]]
