"""One builder for the OFAv2 space and supernet (timm's ``build_model_with_cfg`` idea).

Everything that makes a supernet or its space goes through here, from whichever description it
holds: the validated ``config.supernet`` section (``SupernetConfig``), the plain space options a
checkpoint or an actor carries, or an ``OFAv2Space`` itself.

- ``build_space(source)``: the ``OFAv2Space``; ``dropout`` is not a space option and is left
  aside, any other unknown key is an error (``TypeError``), as ``OFAv2Space`` raises it.
- ``build_supernet(source, num_classes, dropout=None, seed=None)``: the ``OFAv2Supernet``; the
  dropout comes from ``dropout``, else from a ``SupernetConfig``/mapping that has one, else the
  network's default. ``seed`` makes the initialisation reproducible without the global RNG.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.config import SupernetConfig
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet.network import OFAv2Supernet

SpaceSource = SupernetConfig | Mapping[str, Any] | OFAv2Space


def _options(source: SupernetConfig | Mapping[str, Any]) -> dict[str, Any]:
    return dict(source.model_dump() if isinstance(source, SupernetConfig) else source)


def build_space(source: SpaceSource) -> OFAv2Space:
    """The ``OFAv2Space`` that ``source`` describes."""
    if isinstance(source, OFAv2Space):
        return source
    options = _options(source)
    options.pop("dropout", None)  # a network setting, not a space option; any other key is an error
    return OFAv2Space(**options)


def build_supernet(source: SpaceSource, num_classes: int, dropout: float | None = None,
                   seed: int | None = None) -> OFAv2Supernet:
    """The ``OFAv2Supernet`` of ``source``'s space (see the module docstring for ``dropout``)."""
    if dropout is None and not isinstance(source, OFAv2Space):
        dropout = _options(source).get("dropout")
    extra = {} if dropout is None else {"dropout": float(dropout)}
    return OFAv2Supernet(build_space(source), num_classes, seed=seed, **extra)
