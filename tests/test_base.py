"""Architecture identity, the NATS-Bench space, the table evaluator, Pareto utilities, config."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.errors import ArchitectureError, ConfigError, DataError
from pipeline.evaluate.interface import Objective
from pipeline.evaluate.table import TableEvaluator, load_table
from pipeline.search.pareto import hypervolume_ratio, nondominated_ranks, pareto_mask, to_minimization
from pipeline.space import arch_id, canonical_json, get_space
from pipeline.space.natsbench import NATSBenchSpace


def test_canonical_json_sorted_and_compact():
    assert canonical_json({"b": [1, 2], "a": 3}) == '{"a":3,"b":[1,2]}'
    assert arch_id({"b": [1, 2], "a": 3}) == arch_id({"a": 3, "b": [1, 2]})
    assert arch_id({"a": 3}) != arch_id({"a": 4})
    # stable across processes and versions: a literal computed once
    assert arch_id({"edges": ["none"] * 6}) == "198c4dcdfb961e34"


def test_natsbench_text_round_trip_and_genes():
    space = NATSBenchSpace()
    text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    arch = space.from_text(text)
    assert space.to_text(arch) == text
    assert space.decode(space.encode(arch)) == arch
    rng = np.random.default_rng(0)
    for _ in range(50):
        sampled = space.sample(rng)
        assert space.decode(space.encode(sampled)) == sampled
        child = space.crossover(sampled, space.mutate(sampled, rng, 0.5), rng)
        assert space.validate(child) == child


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"edges": ["none"] * 5}, "edges"),
        ({"edges": ["none"] * 5 + ["conv9"]}, "edges[5]"),
        ({"cells": []}, "edges"),
    ],
)
def test_natsbench_invalid_names_field(bad, field):
    with pytest.raises(ArchitectureError, match=field.replace("[", r"\[").replace("]", r"\]")):
        NATSBenchSpace().validate(bad)


def test_natsbench_bad_string():
    with pytest.raises(ArchitectureError):
        NATSBenchSpace().from_text("|none~0|+|none~1|")


def test_get_space_unknown():
    with pytest.raises(ConfigError, match="unknown search space"):
        get_space("resnet")


def test_table_evaluator_counts_and_looks_up(bench_table_path):
    evaluator = TableEvaluator(bench_table_path)
    space = evaluator.space
    assert len(evaluator.table) == 15625
    cheap = evaluator.cheap_metrics(space.largest())
    assert evaluator.evaluations == 0 and cheap["params_m"] > 1.0
    results = evaluator.evaluate([space.smallest(), space.largest()])
    assert evaluator.evaluations == 2
    assert results[1].metrics["top1"] > results[0].metrics["top1"]
    assert results[0].arch_id == space.arch_id(space.smallest())


def test_table_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,accuracy,params_m\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1,2\n")
    with pytest.raises(DataError, match="flops_m"):
        load_table(bad)
    bad.write_text("arch,accuracy,params_m,flops_m\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,x,2,3\n")
    with pytest.raises(DataError, match="line 2"):
        load_table(bad)
    bad.write_text("arch,accuracy,params_m,flops_m\n|zz~0|,1,2,3\n")
    with pytest.raises(DataError, match="malformed arch"):
        load_table(bad)


def test_pareto_ranks_and_hv():
    objectives = [Objective("top1", "max"), Objective("params_m", "min")]
    values = np.array([[90.0, 1.0], [80.0, 0.5], [85.0, 1.5], [70.0, 0.2]])
    minimized = to_minimization(values, objectives)
    assert pareto_mask(minimized).tolist() == [True, True, False, True]
    assert nondominated_ranks(minimized).tolist() == [0, 0, 1, 0]
    front = minimized[pareto_mask(minimized)]
    assert hypervolume_ratio(front, front) == pytest.approx(1.0)
    assert hypervolume_ratio(front[:1], front) < 1.0


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'data.datset'"):
        load_config(overrides=["data.datset=cifar10"])
    with pytest.raises(ConfigError, match="data.val_fraction"):
        load_config(overrides=["data.val_fraction=1.5"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "c.yaml"
    path.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    path.write_text("data:\n  batch_size: 8\n")
    assert load_config(path, ["run.seed=3"]).data.batch_size == 8
