"""The OFAv2 search space: elastic resolution, depth, kernel, expand, exit (height) and branches (level).

An architecture is a dict with exactly these fields::

    {"resolution": int, "depths": [5 ints], "kernels": [20 ints], "expands": [20 ints],
     "branches": [20 ints in 1..7],   # only when parallel_blocks
     "exit": int in 1..5}             # only when early_exits

Block ``i`` belongs to stage ``i // 4``. ``branches`` is a 3-bit mask per block: bit 1 is the
MBConv branch (with its identity shortcut where stride is 1 and widths match), bit 2 the 1x1
convolution branch, bit 4 the transformation branch; a mask without bit 1 has no identity term. ``exit`` is the
height: the subnet keeps stages ``1..exit`` and ends at that stage's exit head.

Canonical form (what ``validate``/``canonical`` return, and what ``arch_id`` hashes): every
decision that does not change the network is normalised, so equal networks get equal ids.

- Stages beyond the exit get the smallest depth; all their blocks count as unused.
- Blocks beyond their stage's depth are unused.
- Unused blocks get the smallest kernel, the smallest expand and the full mask 7.
- Used blocks whose mask excludes the MBConv branch get the smallest kernel and expand.

Genes (``encode``/``decode``) index into the choice lists, so they are ordinal: gene 0 is always
the smallest choice. Order: resolution, exit (early-exit spaces only), 5 depths, then per block
kernel, expand and (parallel spaces only) ``mask - 1``. ``gene_names`` names them.

``sample_initial`` is NATv2's architecture-space sampling: each optional block of a stage is
kept with probability 2/3 and a skipped block truncates the rest of its stage, so the depth is the
smallest depth plus the number of consecutively kept optional blocks. The exit is drawn uniformly
from 1..5 (truncated sampling would put a third of the archive at exit 1, the weakest subnets);
kernels, expands, resolution and masks are drawn uniformly.

Training-time sampling (progressive shrinking): ``ElasticChoices`` are the allowed values of each
elastic dimension in a training part (``None``: fixed at the maximum), ``sample_arch`` draws a
subnet under them (weighted by an ``ArchPrior``, Cream's board, when given) and ``extreme_arch``
gives the smallest or largest subnet they allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import ArchitectureError, ConfigError
from pipeline.space.base import Architecture, SearchSpace

NUM_STAGES = 5
MAX_BLOCKS_PER_STAGE = 4
NUM_BLOCKS = NUM_STAGES * MAX_BLOCKS_PER_STAGE
FULL_MASK = 7
MBCONV_BIT = 1
CONV1X1_BIT = 2
TRANSFORM_BIT = 4
SKIP_PROBABILITY = 1.0 / 3.0
ALL_BRANCH_MASKS = tuple(range(1, FULL_MASK + 1))


def _choices(name: str, values: Sequence[int], low: int = 1, high: int | None = None) -> tuple[int, ...]:
    try:
        cleaned = tuple(sorted({int(v) for v in values}))
    except (TypeError, ValueError):
        raise ConfigError(f"ofav2 space: '{name}' must be a list of integers") from None
    if not cleaned or cleaned[0] < low or (high is not None and cleaned[-1] > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"ofav2 space: '{name}' must be a non-empty list of integers in {bound}")
    return cleaned


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class OFAv2Space(SearchSpace):
    """The supernet's space; the variant (SE/EE x B/D/P/DP) and the choice lists are options."""

    name = "ofav2"

    def __init__(
        self,
        early_exits: bool = True,
        dense_skips: bool = True,
        parallel_blocks: bool = False,
        width_mult: float = 1.0,
        kernel_choices: Sequence[int] = (3, 5, 7),
        expand_choices: Sequence[int] = (3, 4, 6),
        depth_choices: Sequence[int] = (2, 3, 4),
        resolutions: Sequence[int] = (24, 28, 32),
        stage_widths: Sequence[int] = (24, 40, 80, 112, 160),
    ) -> None:
        self.early_exits = bool(early_exits)
        self.dense_skips = bool(dense_skips)
        self.parallel_blocks = bool(parallel_blocks)
        if not float(width_mult) > 0:
            raise ConfigError("ofav2 space: 'width_mult' must be positive")
        self.width_mult = float(width_mult)
        self.kernel_choices = _choices("kernel_choices", kernel_choices, 1, 7)
        if any(k % 2 == 0 for k in self.kernel_choices):
            raise ConfigError("ofav2 space: 'kernel_choices' must be odd (3, 5 or 7)")
        if not set(self.kernel_choices) <= {3, 5, 7}:
            raise ConfigError("ofav2 space: 'kernel_choices' must be a subset of 3, 5, 7")
        self.expand_choices = _choices("expand_choices", expand_choices, 1)
        self.depth_choices = _choices("depth_choices", depth_choices, 1, MAX_BLOCKS_PER_STAGE)
        self.resolutions = _choices("resolutions", resolutions, 8)
        widths = tuple(int(w) for w in stage_widths)
        if len(widths) != NUM_STAGES or min(widths) < 1:
            raise ConfigError(f"ofav2 space: 'stage_widths' must be {NUM_STAGES} positive integers")
        self.stage_widths = widths

    # ----------------------------------------------------------------------------- identity
    @property
    def variant_name(self) -> str:
        """The paper's variant name: SE/EE, then B, D, P or DP."""
        head = "EE" if self.early_exits else "SE"
        tail = ("D" if self.dense_skips else "") + ("P" if self.parallel_blocks else "")
        return f"{head}_{tail or 'B'}"

    def options(self) -> dict[str, Any]:
        """JSON-serialisable keyword arguments that rebuild this space."""
        return {
            "early_exits": self.early_exits,
            "dense_skips": self.dense_skips,
            "parallel_blocks": self.parallel_blocks,
            "width_mult": self.width_mult,
            "kernel_choices": list(self.kernel_choices),
            "expand_choices": list(self.expand_choices),
            "depth_choices": list(self.depth_choices),
            "resolutions": list(self.resolutions),
            "stage_widths": list(self.stage_widths),
        }

    def __repr__(self) -> str:
        return f"OFAv2Space({self.variant_name}, {self.options()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OFAv2Space) and self.options() == other.options()

    def __hash__(self) -> int:
        return hash(repr(self.options()))

    def fields(self) -> tuple[str, ...]:
        """The exact field names of an architecture of this space."""
        names = ["resolution", "depths", "kernels", "expands"]
        if self.parallel_blocks:
            names.append("branches")
        if self.early_exits:
            names.append("exit")
        return tuple(names)

    # ----------------------------------------------------------------------------- structure
    def used_blocks(self, arch: Architecture) -> list[bool]:
        """Per block: whether it runs in the network of the (canonical) ``arch``."""
        num_stages = arch.get("exit", NUM_STAGES)
        used = []
        for stage in range(NUM_STAGES):
            for slot in range(MAX_BLOCKS_PER_STAGE):
                used.append(stage < num_stages and slot < arch["depths"][stage])
        return used

    # ----------------------------------------------------------------------------- validation
    def validate(self, arch: Architecture) -> Architecture:
        if not isinstance(arch, dict):
            raise ArchitectureError("ofav2 architecture must be an object (a dict)")
        expected = set(self.fields())
        missing = sorted(expected - set(arch))
        if missing:
            raise ArchitectureError(f"ofav2 architecture ({self.variant_name}) is missing field '{missing[0]}'")
        extra = sorted(set(arch) - expected)
        if extra:
            raise ArchitectureError(
                f"ofav2 architecture ({self.variant_name}) has unknown field '{extra[0]}'; "
                f"allowed fields: {', '.join(self.fields())}"
            )
        out: dict[str, Any] = {"resolution": self._check_value("resolution", arch["resolution"], self.resolutions)}
        out["depths"] = self._check_list("depths", arch["depths"], NUM_STAGES, self.depth_choices)
        out["kernels"] = self._check_list("kernels", arch["kernels"], NUM_BLOCKS, self.kernel_choices)
        out["expands"] = self._check_list("expands", arch["expands"], NUM_BLOCKS, self.expand_choices)
        if self.parallel_blocks:
            out["branches"] = self._check_list("branches", arch["branches"], NUM_BLOCKS, tuple(range(1, 8)))
        if self.early_exits:
            out["exit"] = self._check_value("exit", arch["exit"], tuple(range(1, NUM_STAGES + 1)))
        return self._normalise(out)

    @staticmethod
    def _check_value(field: str, value: Any, allowed: Sequence[int]) -> int:
        if not _is_int(value) or int(value) not in allowed:
            raise ArchitectureError(
                f"field '{field}' is {value!r}; allowed values: {', '.join(str(a) for a in allowed)}"
            )
        return int(value)

    def _check_list(self, field: str, values: Any, length: int, allowed: Sequence[int]) -> list[int]:
        if not isinstance(values, (list, tuple)) or len(values) != length:
            raise ArchitectureError(f"field '{field}' must be a list of {length} integers")
        return [self._check_value(f"{field}[{i}]", v, allowed) for i, v in enumerate(values)]

    def _normalise(self, arch: dict[str, Any]) -> Architecture:
        """Apply the canonical-form rules of the module docstring to a checked architecture."""
        if self.early_exits:
            for stage in range(arch["exit"], NUM_STAGES):
                arch["depths"][stage] = self.depth_choices[0]
        used = self.used_blocks(arch)
        for block, is_used in enumerate(used):
            if not is_used:
                if self.parallel_blocks:
                    arch["branches"][block] = FULL_MASK
                arch["kernels"][block] = self.kernel_choices[0]
                arch["expands"][block] = self.expand_choices[0]
            elif self.parallel_blocks and not arch["branches"][block] & MBCONV_BIT:
                arch["kernels"][block] = self.kernel_choices[0]
                arch["expands"][block] = self.expand_choices[0]
        return arch

    # ----------------------------------------------------------------------------- sampling
    def _assemble(self, resolution: int, depths, kernels, expands, branches, exit_: int) -> Architecture:
        arch: dict[str, Any] = {
            "resolution": int(resolution),
            "depths": [int(d) for d in depths],
            "kernels": [int(k) for k in kernels],
            "expands": [int(e) for e in expands],
        }
        if self.parallel_blocks:
            arch["branches"] = [int(b) for b in branches]
        if self.early_exits:
            arch["exit"] = int(exit_)
        return self._normalise(arch)

    def sample(self, rng: np.random.Generator) -> Architecture:
        return self._assemble(
            rng.choice(self.resolutions),
            rng.choice(self.depth_choices, NUM_STAGES),
            rng.choice(self.kernel_choices, NUM_BLOCKS),
            rng.choice(self.expand_choices, NUM_BLOCKS),
            rng.integers(1, FULL_MASK + 1, NUM_BLOCKS),
            rng.integers(1, NUM_STAGES + 1),
        )

    def sample_initial(self, rng: np.random.Generator) -> Architecture:
        """NATv2 architecture-space sampling (see the module docstring)."""
        depths = []
        for _ in range(NUM_STAGES):
            depth = self.depth_choices[0]
            for candidate in self.depth_choices[1:]:
                if rng.random() < SKIP_PROBABILITY:
                    break
                depth = candidate
            depths.append(depth)
        return self._assemble(
            rng.choice(self.resolutions),
            depths,
            rng.choice(self.kernel_choices, NUM_BLOCKS),
            rng.choice(self.expand_choices, NUM_BLOCKS),
            rng.integers(1, FULL_MASK + 1, NUM_BLOCKS),
            rng.integers(1, NUM_STAGES + 1),
        )

    def smallest(self) -> Architecture:
        """Fewest parameters and MACs: only the transformation branch where blocks are parallel
        (without the MBConv bit a block has no identity shortcut either)."""
        return self._assemble(
            self.resolutions[0], [self.depth_choices[0]] * NUM_STAGES, [self.kernel_choices[0]] * NUM_BLOCKS,
            [self.expand_choices[0]] * NUM_BLOCKS, [TRANSFORM_BIT] * NUM_BLOCKS, 1,
        )

    def largest(self) -> Architecture:
        return self._assemble(
            self.resolutions[-1], [self.depth_choices[-1]] * NUM_STAGES, [self.kernel_choices[-1]] * NUM_BLOCKS,
            [self.expand_choices[-1]] * NUM_BLOCKS, [FULL_MASK] * NUM_BLOCKS, NUM_STAGES,
        )

    # ----------------------------------------------------------------------------- genes
    def gene_names(self) -> list[str]:
        """Names of the genes, in ``encode`` order (usable as Parquet column names)."""
        names = ["resolution"] + (["exit"] if self.early_exits else [])
        names += [f"depth_{s}" for s in range(NUM_STAGES)]
        for block in range(NUM_BLOCKS):
            names += [f"kernel_{block}", f"expand_{block}"]
            if self.parallel_blocks:
                names.append(f"branches_{block}")
        return names

    def gene_upper_bounds(self) -> np.ndarray:
        upper = [len(self.resolutions) - 1] + ([NUM_STAGES - 1] if self.early_exits else [])
        upper += [len(self.depth_choices) - 1] * NUM_STAGES
        per_block = [len(self.kernel_choices) - 1, len(self.expand_choices) - 1]
        if self.parallel_blocks:
            per_block.append(FULL_MASK - 1)
        return np.array(upper + per_block * NUM_BLOCKS, dtype=np.int64)

    def encode(self, arch: Architecture) -> np.ndarray:
        arch = self.validate(arch)
        genes = [self.resolutions.index(arch["resolution"])]
        if self.early_exits:
            genes.append(arch["exit"] - 1)
        genes += [self.depth_choices.index(d) for d in arch["depths"]]
        for block in range(NUM_BLOCKS):
            genes += [self.kernel_choices.index(arch["kernels"][block]), self.expand_choices.index(arch["expands"][block])]
            if self.parallel_blocks:
                genes.append(arch["branches"][block] - 1)
        return np.array(genes, dtype=np.int64)

    def decode(self, genes: np.ndarray) -> Architecture:
        upper = self.gene_upper_bounds()
        values = np.asarray(genes)
        if values.shape != upper.shape:
            raise ArchitectureError(f"ofav2 genes must be a vector of {len(upper)} integers, got shape {values.shape}")
        values = np.rint(values).astype(np.int64)
        bad = np.flatnonzero((values < 0) | (values > upper))
        if bad.size:
            i = int(bad[0])
            raise ArchitectureError(f"gene {i} ({self.gene_names()[i]}) is {values[i]}; allowed values: 0..{upper[i]}")
        position = 0

        def take() -> int:
            nonlocal position
            position += 1
            return int(values[position - 1])

        resolution = self.resolutions[take()]
        exit_ = take() + 1 if self.early_exits else NUM_STAGES
        depths = [self.depth_choices[take()] for _ in range(NUM_STAGES)]
        kernels, expands, branches = [], [], []
        for _ in range(NUM_BLOCKS):
            kernels.append(self.kernel_choices[take()])
            expands.append(self.expand_choices[take()])
            branches.append(take() + 1 if self.parallel_blocks else FULL_MASK)
        return self._assemble(resolution, depths, kernels, expands, branches, exit_)


# --------------------------------------------------------------------------------- training-time sampling
@dataclass(frozen=True)
class ElasticChoices:
    """Allowed values per elastic dimension; ``None`` means fixed at the maximum."""

    kernels: tuple[int, ...] | None = None
    branch_counts: tuple[int, ...] | None = None
    exits: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None
    expands: tuple[int, ...] | None = None


@dataclass
class ArchPrior:
    """Per-decision sampling weights (Cream's board-informed sampling); counts by value."""

    counts: dict[str, list[dict[int, float]]] = field(default_factory=dict)
    mix: float = 0.0


def _choose(rng: np.random.Generator, values: tuple[int, ...], prior: ArchPrior | None,
            key: str, index: int) -> int:
    if prior is None or prior.mix <= 0.0 or key not in prior.counts:
        return int(values[rng.integers(len(values))])
    counts = prior.counts[key][index]
    weights = np.array([counts.get(v, 0.0) for v in values], dtype=float)
    uniform = np.full(len(values), 1.0 / len(values))
    probs = uniform if weights.sum() <= 0 else (
        (1.0 - prior.mix) * uniform + prior.mix * weights / weights.sum())
    return int(values[rng.choice(len(values), p=probs)])


def sample_arch(space: OFAv2Space, choices: ElasticChoices, rng: np.random.Generator,
                resolution: int, prior: ArchPrior | None = None) -> dict:
    """A subnet allowed by ``choices`` (fixed dimensions at their maximum)."""
    def pick(values: tuple[int, ...] | None, maximum: int, key: str, index: int) -> int:
        return maximum if values is None else _choose(rng, values, prior, key, index)

    arch: dict = {"resolution": int(resolution)}
    arch["depths"] = [pick(choices.depths, max(space.depth_choices), "depths", s)
                      for s in range(NUM_STAGES)]
    arch["kernels"] = [pick(choices.kernels, max(space.kernel_choices), "kernels", b)
                       for b in range(NUM_BLOCKS)]
    arch["expands"] = [pick(choices.expands, max(space.expand_choices), "expands", b)
                       for b in range(NUM_BLOCKS)]
    if space.parallel_blocks:
        if choices.branch_counts is None:
            arch["branches"] = [7] * NUM_BLOCKS
        else:
            masks = tuple(m for m in ALL_BRANCH_MASKS if bin(m).count("1") in choices.branch_counts)
            arch["branches"] = [_choose(rng, masks, prior, "branches", b) for b in range(NUM_BLOCKS)]
    if space.early_exits:
        arch["exit"] = pick(choices.exits, NUM_STAGES, "exit", 0)
    return space.validate(arch)


def extreme_arch(space: OFAv2Space, choices: ElasticChoices, smallest: bool) -> dict:
    """The smallest (or largest) subnet the current choices allow."""
    pick = min if smallest else max
    fixed = ElasticChoices(**{name: None if values is None else (pick(values),)
                              for name, values in choices.__dict__.items()})
    resolution = pick(space.resolutions)
    arch = sample_arch(space, fixed, np.random.default_rng(0), resolution)
    if space.parallel_blocks and choices.branch_counts is not None:
        # among the allowed masks, the cheapest (or dearest): fewest branches first, then the
        # transformation branch < the 1x1 convolution < the MBConv
        masks = [m for m in ALL_BRANCH_MASKS if bin(m).count("1") in choices.branch_counts]
        mask = pick(masks, key=lambda m: (bin(m).count("1"), 4 * (m & 1) + (m & 2) + (m & 4) // 4))
        arch = space.validate(dict(arch, branches=[mask] * len(arch["branches"])))
    return arch
