"""NATv2's settings: the engine's view of the validated ``search`` config section.

The defaults are written once, in ``pipeline.config.SearchConfig`` (validated, documented, the
tuned ones from ``jobs/bench_search.py``); ``NATv2Settings`` reads its defaults from there, so the
two cannot drift. ``from_config`` turns a section (or any mapping of its fields) into settings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from pipeline.config import SearchConfig

_SECTION = SearchConfig()


@dataclass(frozen=True)
class NATv2Settings:
    """The engine's knobs; each default is the ``search`` section's."""

    max_evaluations: int = _SECTION.max_evaluations
    iterations: int | None = _SECTION.iterations  # None: run until the evaluation budget is spent
    archive_size: int = _SECTION.archive_size
    initial_size: int | None = _SECTION.initial_size  # None: scaled with the budget (``initial_archive_size``)
    initial_fraction: float = _SECTION.initial_fraction
    min_initial_size: int = _SECTION.min_initial_size
    initial_factor: float = _SECTION.initial_factor  # pre-processing: evaluate factor x initial size
    candidates_per_iteration: int | None = _SECTION.candidates_per_iteration  # None: budget / target_iterations
    target_iterations: int = _SECTION.target_iterations
    surrogates: tuple[str, ...] = tuple(_SECTION.surrogates)
    ensemble_size: int = _SECTION.ensemble_size
    cv_folds: int = _SECTION.cv_folds
    surrogate_population: int = _SECTION.surrogate_population
    surrogate_generations: int = _SECTION.surrogate_generations
    subset_selection: str = _SECTION.subset_selection
    early_rows: int = _SECTION.early_rows  # 0: no small-archive phase
    early_surrogates: tuple[str, ...] = tuple(_SECTION.early_surrogates)
    early_subset_selection: str = _SECTION.early_subset_selection
    adaptation_enabled: bool = _SECTION.adaptation.enabled
    adaptation_archs: int = _SECTION.adaptation.archs_sampled

    @classmethod
    def from_config(cls, section: SearchConfig | Mapping[str, Any]) -> NATv2Settings:
        """Settings from the ``search`` section (or a mapping of its fields); other keys are ignored."""
        if not isinstance(section, SearchConfig):  # validate a mapping as the section would be (presets too)
            known = set(SearchConfig.model_fields)
            section = SearchConfig(**{k: v for k, v in dict(section).items() if k in known})
        values = section.model_dump()
        adaptation = values.pop("adaptation", None) or {}
        if adaptation:
            values.setdefault("adaptation_enabled", adaptation.get("enabled", cls.adaptation_enabled))
            values.setdefault("adaptation_archs", adaptation.get("archs_sampled", cls.adaptation_archs))
        known = {f.name for f in fields(cls)}
        picked = {k: (tuple(v) if k in ("surrogates", "early_surrogates") else v) for k, v in values.items() if k in known}
        return cls(**picked)

    def initial_archive_size(self) -> int:
        """Initial archive size: explicit, or ``initial_fraction`` x budget within [min, archive]."""
        if self.initial_size is not None:
            return self.initial_size
        scaled = round(self.initial_fraction * self.max_evaluations)
        return int(min(self.archive_size, max(self.min_initial_size, scaled)))

    def candidates(self) -> int:
        """K: explicit, or about ``target_iterations`` iterations' worth of the budget, within [5, 25]."""
        if self.candidates_per_iteration is not None:
            return self.candidates_per_iteration
        return int(min(25, max(5, round(self.max_evaluations / self.target_iterations))))

    def evaluations_for_initial(self) -> int:
        """True evaluations the initial archive takes (pre-processing included)."""
        return int(math.ceil(self.initial_factor * self.initial_archive_size()))
