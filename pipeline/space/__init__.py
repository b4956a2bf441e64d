"""Search spaces: what an architecture is, and how to sample, check, vary and encode it.

This package depends on nothing else in ``pipeline``. ``base`` holds the interface and the
architecture identity (canonical JSON and ``arch_id``); ``ofav2`` is the supernet's space and
``natsbench`` the tabular NATS-Bench topology space.
"""

from pipeline.space.base import SearchSpace, arch_id, canonical_json

__all__ = ["SearchSpace", "arch_id", "canonical_json", "get_space"]


def get_space(name: str, **options) -> SearchSpace:
    """Build a search space by name (``ofav2`` or ``natsbench``)."""
    from pipeline.errors import ConfigError

    if name == "ofav2":
        from pipeline.space.ofav2 import OFAv2Space

        return OFAv2Space(**options)
    if name == "natsbench":
        from pipeline.space.natsbench import NATSBenchSpace

        return NATSBenchSpace(**options)
    raise ConfigError(f"unknown search space {name!r}; expected one of: ofav2, natsbench")
