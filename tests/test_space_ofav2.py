"""The OFAv2 search space: validation, canonical form, identity, genes and sampling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import ArchitectureError, ConfigError
from pipeline.space import get_space
from pipeline.space.base import arch_id
from pipeline.space.ofav2 import NUM_BLOCKS, OFAv2Space

VARIANTS = [
    dict(early_exits=ee, dense_skips=d, parallel_blocks=p)
    for ee in (False, True)
    for d in (False, True)
    for p in (False, True)
]


def test_variant_names_and_options_round_trip():
    names = {OFAv2Space(**v).variant_name for v in VARIANTS}
    assert names == {"SE_B", "SE_D", "SE_P", "SE_DP", "EE_B", "EE_D", "EE_P", "EE_DP"}
    space = OFAv2Space(parallel_blocks=True, width_mult=1.2, resolutions=(32, 24))
    rebuilt = get_space("ofav2", **json.loads(json.dumps(space.options())))
    assert rebuilt == space and rebuilt.variant_name == "EE_DP"
    assert rebuilt.resolutions == (24, 32)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="kernel_choices"):
        OFAv2Space(kernel_choices=(3, 4))
    with pytest.raises(ConfigError, match="stage_widths"):
        OFAv2Space(stage_widths=(8, 8))


@pytest.mark.parametrize("options", VARIANTS, ids=lambda v: OFAv2Space(**v).variant_name)
def test_samples_are_canonical_and_genes_round_trip(options):
    space = OFAv2Space(**options)
    rng = np.random.default_rng(1)
    upper = space.gene_upper_bounds()
    assert len(upper) == len(space.gene_names())
    for _ in range(20):
        for arch in (space.sample(rng), space.sample_initial(rng)):
            assert set(arch) == set(space.fields())
            assert space.validate(arch) == arch
            genes = space.encode(arch)
            assert genes.min() >= 0 and np.all(genes <= upper)
            assert space.decode(genes) == arch
            assert space.from_text(space.to_text(arch)) == arch
    parent_a, parent_b = space.sample(rng), space.sample(rng)
    for child in (space.mutate(parent_a, rng, 0.3), space.crossover(parent_a, parent_b, rng)):
        assert space.validate(child) == child
    # gene 0 is the smallest choice everywhere: genes are ordinal
    assert space.decode(np.zeros_like(upper))["resolution"] == min(space.resolutions)
    assert space.validate(space.smallest()) == space.smallest()
    assert space.validate(space.largest()) == space.largest()


def test_arch_id_is_stable_and_canonical():
    space = OFAv2Space()  # EE_D with the default choices
    largest = space.largest()
    # literal computed once: the id must never change across processes or versions
    assert space.arch_id(largest) == "e601b7039d6239d3"
    assert arch_id(json.loads(json.dumps(largest))) == "e601b7039d6239d3"
    smaller = dict(largest, exit=4)
    assert space.arch_id(smaller) != space.arch_id(largest)
    # decisions of a stage beyond the exit do not change the network, so not the id
    noisy = json.loads(json.dumps(smaller))
    noisy["depths"][4] = 4
    noisy["kernels"][19] = 7
    assert space.arch_id(noisy) == space.arch_id(smaller)
    assert space.canonical(noisy)["depths"][4] == 2
    # blocks beyond a stage's depth are normalised too
    shallow = json.loads(json.dumps(largest))
    shallow["depths"][0] = 2
    other = json.loads(json.dumps(shallow))
    other["expands"][3] = 6
    assert space.arch_id(shallow) == space.arch_id(other)
    assert space.canonical(other)["expands"][3] == 3


def test_mask_without_mbconv_normalises_kernel_and_expand():
    space = OFAv2Space(parallel_blocks=True)
    arch = space.largest()
    arch["branches"][0] = 6
    canonical = space.canonical(arch)
    assert canonical["kernels"][0] == 3 and canonical["expands"][0] == 3
    assert canonical["branches"][0] == 6
    smallest = space.smallest()  # exit 1, depth 2: only blocks 0 and 1 are used
    assert smallest["branches"] == [4, 4] + [7] * (NUM_BLOCKS - 2)


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda a: a["kernels"].__setitem__(3, 4), r"field 'kernels\[3\]' is 4; allowed values: 3, 5, 7"),
        (lambda a: a.__setitem__("exit", 6), r"field 'exit' is 6; allowed values: 1, 2, 3, 4, 5"),
        (lambda a: a.__setitem__("resolution", 30), r"field 'resolution' is 30; allowed values: 24, 28, 32"),
        (lambda a: a["depths"].pop(), r"field 'depths' must be a list of 5"),
        (lambda a: a.__setitem__("branches", [7] * 20), r"unknown field 'branches'"),
        (lambda a: a.pop("exit"), r"missing field 'exit'"),
        (lambda a: a["expands"].__setitem__(0, True), r"field 'expands\[0\]' is True"),
    ],
)
def test_invalid_architecture_names_the_field(mutation, message):
    space = OFAv2Space()
    arch = space.largest()
    mutation(arch)
    with pytest.raises(ArchitectureError, match=message):
        space.validate(arch)


def test_decode_rejects_out_of_range_genes():
    space = OFAv2Space()
    genes = space.encode(space.largest())
    genes[1] = 9
    with pytest.raises(ArchitectureError, match="gene 1 \\(exit\\)"):
        space.decode(genes)


def test_sample_initial_truncates_depths():
    space = OFAv2Space(early_exits=False, depth_choices=(1, 2, 3, 4))
    rng = np.random.default_rng(0)
    depths = np.array([space.sample_initial(rng)["depths"] for _ in range(600)]).ravel()
    # depth = 1 + kept optional layers: P(1)=1/3, P(2)=2/9, P(3)=4/27, P(4)=8/27
    shares = np.bincount(depths, minlength=5)[1:] / depths.size
    np.testing.assert_allclose(shares, [1 / 3, 2 / 9, 4 / 27, 8 / 27], atol=0.04)
    uniform = np.array([space.sample(rng)["depths"] for _ in range(600)]).ravel()
    assert abs(np.mean(uniform == 1) - 0.25) < 0.04
