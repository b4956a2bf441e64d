"""NATv2's settings: the engine's view of the validated ``search`` config section.

The settings are declared once, in ``pipeline.config.SearchConfig`` (validated, documented, the
tuned defaults from ``jobs/bench_search.py``). ``NATv2Settings`` is a frozen dataclass generated
from that section's keys, so the two cannot drift and a key cannot be dropped on the way:

- every ``search`` key except ``DRIVER_KEYS`` becomes a field of the same name and default
  (lists become tuples, so the settings stay immutable);
- ``search.adaptation``'s two keys the engine reads become ``adaptation_enabled`` and
  ``adaptation_archs`` (``ADAPTATION_FIELDS``);
- ``experiments`` (keyword-only) holds ``NATv2Experiments``: options measured no better than the
  defaults, which no config can set; only the benchmark's variants change them.

``NATv2Settings.from_config`` takes the section (or a mapping validated as the section, so an
unknown key is an error) and fills every field. Variants are built with ``dataclasses.replace``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from pydantic import ValidationError

from pipeline.config import AdaptationConfig, SearchConfig, format_validation_error
from pipeline.errors import ConfigError

#: ``search`` keys the stage and driver read, not the engine (it gets the objectives as an argument)
DRIVER_KEYS = frozenset({"space", "table", "objectives", "adaptation"})
#: the engine's adaptation fields and the ``search.adaptation`` keys they come from
ADAPTATION_FIELDS = {"adaptation_enabled": "enabled", "adaptation_archs": "archs_sampled"}


@dataclass(frozen=True)
class NATv2Experiments:
    """Experimental engine options, measured no better than the defaults (``jobs/bench_search.py``).

    They are not config keys; the benchmark's variants (``pipeline.bench.search.NATV2_VARIANTS``)
    set them. With the defaults the engine behaves as if they did not exist.

    ``early_rows``: while fewer architectures are measured (0: never), fit ``early_surrogates`` and
    select by ``early_subset_selection`` (a second surrogate bank, built only then).
    ``ensemble_size``: also score the mean of the best ``ensemble_size`` surrogates (0: never).
    """

    early_rows: int = 0
    early_surrogates: tuple[str, ...] = ("gp",)
    early_subset_selection: str = "hvi"
    ensemble_size: int = 0


def _immutable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _field_type(annotation: Any) -> Any:
    """A list-typed key is held as a tuple."""
    return tuple[Any, ...] if getattr(annotation, "__origin__", None) is list else annotation


def _engine_keys() -> list[str]:
    return [name for name in SearchConfig.model_fields if name not in DRIVER_KEYS]


def _generated_fields() -> list[tuple[str, Any, Any]]:
    """(name, type, default) of every engine field, from ``SearchConfig``'s defaults."""
    section = SearchConfig()
    specs: list[tuple[str, Any, Any]] = [
        (name, _field_type(SearchConfig.model_fields[name].annotation), field(default=_immutable(getattr(section, name))))
        for name in _engine_keys()
    ]
    specs += [(name, AdaptationConfig.model_fields[key].annotation, field(default=getattr(section.adaptation, key)))
              for name, key in ADAPTATION_FIELDS.items()]
    specs.append(("experiments", NATv2Experiments, field(default=NATv2Experiments(), kw_only=True)))
    return specs


class _SettingsRules:
    """The sizes the engine derives from its settings (the base of the generated dataclass)."""

    max_evaluations: int
    initial_size: int | None
    initial_fraction: float
    min_initial_size: int
    archive_size: int
    initial_factor: float
    candidates_per_iteration: int | None
    target_iterations: int

    @classmethod
    def from_config(cls, section: SearchConfig | Mapping[str, Any]) -> Any:
        """Settings from the ``search`` section; a mapping is validated as that section first, so
        an unknown key is an error, as in a config file."""
        if not isinstance(section, SearchConfig):
            try:
                section = SearchConfig.model_validate(dict(section))
            except ValidationError as exc:
                raise ConfigError(format_validation_error(exc).replace("config: ", "search: ", 1)) from None
        values = {name: _immutable(getattr(section, name)) for name in _engine_keys()}
        values.update({name: getattr(section.adaptation, key) for name, key in ADAPTATION_FIELDS.items()})
        return cls(**values)

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


NATv2Settings = make_dataclass("NATv2Settings", _generated_fields(), bases=(_SettingsRules,), frozen=True)
NATv2Settings.__module__ = __name__  # so that settings pickle (the benchmark's worker processes)
NATv2Settings.__doc__ = (
    "The engine's settings: one field per ``search`` key (see the module docstring), defaults "
    "from ``SearchConfig``, and the keyword-only ``experiments``."
)
