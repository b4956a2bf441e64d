"""The NATS-Bench topology search space (the NAS-Bench-201 cell): 6 edges, 5 operations.

An architecture is ``{"edges": [op0, ..., op5]}``; edge order follows the benchmark's string
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, where edge ``op~j`` of node ``i`` reads node ``j``.
``to_text``/``from_text`` use that string, so the ``arch`` column holds the table's own key.
Genes order the operations by cost (none < skip < pool < 1x1 < 3x3), which makes the integer
genes ordinal for surrogates and polynomial mutation.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import ArchitectureError
from pipeline.space.base import Architecture, SearchSpace

OPERATIONS: tuple[str, ...] = ("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")
NUM_EDGES = 6
# (target node, source node) of each edge, in the benchmark string's order.
EDGE_ENDPOINTS: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


class NATSBenchSpace(SearchSpace):
    """The 15,625 cells of the NATS-Bench topology space."""

    name = "natsbench"

    def sample(self, rng: np.random.Generator) -> Architecture:
        return {"edges": [OPERATIONS[i] for i in rng.integers(0, len(OPERATIONS), NUM_EDGES)]}

    def validate(self, arch: Architecture) -> Architecture:
        if not isinstance(arch, dict) or set(arch) != {"edges"}:
            raise ArchitectureError("natsbench architecture must be an object with exactly the field 'edges'")
        edges = arch["edges"]
        if not isinstance(edges, list) or len(edges) != NUM_EDGES:
            raise ArchitectureError(f"field 'edges' must be a list of {NUM_EDGES} operations")
        for index, op in enumerate(edges):
            if op not in OPERATIONS:
                raise ArchitectureError(
                    f"field 'edges[{index}]' is {op!r}; allowed values: {', '.join(OPERATIONS)}"
                )
        return {"edges": list(edges)}

    def encode(self, arch: Architecture) -> np.ndarray:
        return np.array([OPERATIONS.index(op) for op in self.validate(arch)["edges"]], dtype=np.int64)

    def decode(self, genes: np.ndarray) -> Architecture:
        genes = np.asarray(genes).round().astype(np.int64)
        if genes.shape != (NUM_EDGES,) or genes.min() < 0 or genes.max() >= len(OPERATIONS):
            raise ArchitectureError(f"natsbench genes must be {NUM_EDGES} integers in 0..{len(OPERATIONS) - 1}")
        return {"edges": [OPERATIONS[g] for g in genes]}

    def gene_upper_bounds(self) -> np.ndarray:
        return np.full(NUM_EDGES, len(OPERATIONS) - 1, dtype=np.int64)

    def smallest(self) -> Architecture:
        return {"edges": ["none"] * NUM_EDGES}

    def largest(self) -> Architecture:
        return {"edges": ["nor_conv_3x3"] * NUM_EDGES}

    def to_text(self, arch: Architecture) -> str:
        edges = self.validate(arch)["edges"]
        nodes = [[], [], []]
        for (target, source), op in zip(EDGE_ENDPOINTS, edges):
            nodes[target - 1].append(f"{op}~{source}")
        return "|" + "|+|".join("|".join(node) for node in nodes) + "|"

    def from_text(self, text: str) -> Architecture:
        nodes = text.strip().strip("|").split("|+|")
        if len(nodes) != 3:
            raise ArchitectureError(f"natsbench string {text!r} must have 3 nodes separated by '|+|'")
        edges: list[str] = []
        for target, node in enumerate(nodes, start=1):
            parts = node.split("|")
            if len(parts) != target:
                raise ArchitectureError(f"natsbench string {text!r}: node {target} must have {target} edges")
            for source, part in enumerate(parts):
                op, _, read = part.partition("~")
                if read != str(source):
                    raise ArchitectureError(f"natsbench string {text!r}: edge {part!r} must read node {source}")
                edges.append(op)
        return self.validate({"edges": edges})
