"""The search-space interface and architecture identity.

An architecture is a small JSON-serialisable value (a dict of ints, lists and strings). Its
canonical JSON has sorted keys and no whitespace; ``arch_id`` is a short hex digest of that JSON,
so every stage can refer to an architecture by a stable id.

A ``SearchSpace`` samples, validates, mutates, crosses over and encodes architectures. Search and
generation see only this interface, which is why they run unchanged on every space.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

Architecture = dict[str, Any]


def canonical_json(arch: Architecture) -> str:
    """Canonical JSON of an architecture: sorted keys, no whitespace."""
    return json.dumps(arch, sort_keys=True, separators=(",", ":"))


def arch_id(arch: Architecture) -> str:
    """Stable 16-hex-digit id of an architecture, derived from its canonical JSON."""
    return hashlib.sha256(canonical_json(arch).encode()).hexdigest()[:16]


class SearchSpace(ABC):
    """Interface of a search space.

    Genes are a fixed-length vector of non-negative integers; gene ``i`` ranges over
    ``0 .. gene_upper_bounds()[i]`` inclusive. ``decode(encode(a)) == canonical(a)``.
    """

    name: str

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A uniformly sampled architecture (uniform over each decision)."""

    def sample_initial(self, rng: np.random.Generator) -> Architecture:
        """NATv2's architecture-space sampling for the initial archive; uniform by default."""
        return self.sample(rng)

    @abstractmethod
    def validate(self, arch: Architecture) -> Architecture:
        """Return the canonical form of ``arch``; raise ``ArchitectureError`` naming the field."""

    def canonical(self, arch: Architecture) -> Architecture:
        """Canonical form: decisions that do not change the network are normalised."""
        return self.validate(arch)

    @abstractmethod
    def encode(self, arch: Architecture) -> np.ndarray:
        """Integer genes of an architecture."""

    @abstractmethod
    def decode(self, genes: np.ndarray) -> Architecture:
        """The canonical architecture of a gene vector."""

    @abstractmethod
    def gene_upper_bounds(self) -> np.ndarray:
        """Inclusive upper bound of each gene (lower bounds are 0)."""

    @abstractmethod
    def smallest(self) -> Architecture:
        """The smallest architecture of the space."""

    @abstractmethod
    def largest(self) -> Architecture:
        """The largest architecture of the space."""

    def to_text(self, arch: Architecture) -> str:
        """The text stored in the ``arch`` column; canonical JSON unless the space has its own."""
        return canonical_json(self.canonical(arch))

    def from_text(self, text: str) -> Architecture:
        """Parse the text of the ``arch`` column back into an architecture."""
        from pipeline.errors import ArchitectureError

        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchitectureError(f"architecture is not valid JSON: {exc.msg}") from None
        return self.validate(value)

    def arch_id(self, arch: Architecture) -> str:
        """Stable id of the canonical form of ``arch``."""
        return arch_id(self.canonical(arch))

    def mutate(self, arch: Architecture, rng: np.random.Generator, prob: float = 0.1) -> Architecture:
        """Resample each gene with probability ``prob``."""
        genes = self.encode(arch).copy()
        upper = self.gene_upper_bounds()
        flip = rng.random(len(genes)) < prob
        genes[flip] = rng.integers(0, upper[flip] + 1)
        return self.decode(genes)

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Uniform crossover of the genes of two parents."""
        genes_a, genes_b = self.encode(a), self.encode(b)
        take_b = rng.random(len(genes_a)) < 0.5
        return self.decode(np.where(take_b, genes_b, genes_a))
