"""Losses, Cream's board and the phase plan, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.config import PipelineConfig, load_config
from pipeline.errors import ConfigError
from pipeline.space.ofav2 import ElasticChoices, OFAv2Space, sample_arch
from pipeline.train.cream import BoardEntry, MetaNetwork, PrioritizedBoard, board_prior, select_teacher
from pipeline.train.losses import cream_loss, ens_kd_target, kd_loss, multi_exit_loss, soft_cross_entropy
from pipeline.train.schedule import build_plan, derive_seed, lr_at

WEIGHTS = [0.06, 0.13, 0.20, 0.27, 0.34]


def _ce(logits: list[float], label: int) -> float:
    return -logits[label] + math.log(sum(math.exp(v) for v in logits))


def test_multi_exit_loss_matches_hand_computation():
    exits = [[1.0, 0.0], [0.0, 2.0], [0.5, 0.5], [3.0, -1.0], [0.0, 0.0]]
    expected = sum(w * _ce(z, 1) for w, z in zip(WEIGHTS, exits, strict=True))
    tensors = [torch.tensor([z]) for z in exits]
    got = multi_exit_loss(tensors, torch.tensor([1]), WEIGHTS)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_ens_kd_target_is_softmax_of_weighted_logit_sum():
    exits = [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 3.0, 1.0]]
    combined = [sum(w * z[c] for w, z in zip(WEIGHTS, exits, strict=True)) for c in range(3)]
    norm = sum(math.exp(v) for v in combined)
    expected = [math.exp(v) / norm for v in combined]
    target = ens_kd_target([torch.tensor([z]) for z in exits], WEIGHTS)
    assert target[0].tolist() == pytest.approx(expected, rel=1e-6)
    # the student loss: CE + soft CE against that target
    student = [0.2, -0.1, 0.4]
    log_norm = math.log(sum(math.exp(v) for v in student))
    soft = -sum(p * (s - log_norm) for p, s in zip(expected, student, strict=True))
    got = kd_loss(torch.tensor([student]), torch.tensor([2]), target)
    assert got.item() == pytest.approx(_ce(student, 2) + soft, rel=1e-6)
    assert soft_cross_entropy(torch.tensor([student]), target).item() == pytest.approx(soft, rel=1e-6)
    rho = 0.3
    mixed = cream_loss(torch.tensor([student]), torch.tensor([2]), target, rho)
    assert mixed.item() == pytest.approx((rho * soft + (2 - rho) * _ce(student, 2)) / 2, rel=1e-6)


def _entry(name: int, accuracy: float, macs: float) -> BoardEntry:
    arch = {"resolution": 24, "depths": [name]}
    return BoardEntry(arch=arch, accuracy=accuracy, macs=macs, probs=torch.zeros(2, 3))


def test_board_entry_rules_pick_and_drop():
    board = PrioritizedBoard(size=3, margin=5.0)
    assert board.consider(_entry(1, 50.0, 10.0))  # not full
    assert board.consider(_entry(2, 40.0, 20.0))
    assert board.consider(_entry(3, 60.0, 30.0))
    assert len(board) == 3
    # MACs are only needed for paths that beat the worst entry's accuracy
    assert not board.could_enter(40.0) and board.could_enter(40.5)
    assert board.find(_entry(2, 0.0, 0.0).arch).accuracy == 40.0
    # worst is 40 (20 MACs): 44 is neither 5 points better nor cheaper -> rejected
    assert not board.consider(_entry(4, 44.0, 25.0))
    # better by less than the margin but cheaper -> enters, worst (entry 2) dropped
    assert board.consider(_entry(5, 42.0, 15.0))
    assert sorted(e.arch["depths"][0] for e in board.entries) == [1, 3, 5]
    # worst is now 42: a more expensive path 5.5 points better enters by the margin rule
    assert board.consider(_entry(6, 47.5, 99.0))
    assert sorted(e.arch["depths"][0] for e in board.entries) == [1, 3, 6]
    # equal accuracy and cheaper is not "beats"
    assert not board.consider(_entry(7, 47.5, 1.0))
    # a path already on the board refreshes its entry instead of entering twice
    assert not board.consider(_entry(3, 61.0, 30.0))
    assert len(board) == 3 and board.best().accuracy == 61.0
    restored = PrioritizedBoard()
    restored.load_state_dict(board.state_dict())
    assert [e.accuracy for e in restored.entries] == [e.accuracy for e in board.entries]
    prior = board_prior(board, mix=0.5)
    assert prior.counts["depths"][0] == {1: 1.0, 3: 1.0, 6: 1.0}


def test_meta_network_rho_is_the_chosen_entrys_score():
    board = PrioritizedBoard(size=3)
    for i in range(3):
        board.consider(BoardEntry({"depths": [i]}, 50.0, 1.0, torch.full((4, 3), 0.1 * i)))
    meta = MetaNetwork(num_classes=3, hidden=8)
    student = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), 1)
    index, rho = select_teacher(meta, student, board)
    scores = [meta(student, e.probs).item() for e in board.entries]
    assert index == int(np.argmax(scores))
    assert rho.item() == pytest.approx(scores[index])
    rho.backward()
    assert all(p.grad is not None for p in meta.parameters())


def _tiny_space(**overrides) -> OFAv2Space:
    options = dict(early_exits=True, dense_skips=True, parallel_blocks=True,
                   stage_widths=(8, 8, 16, 16, 24), resolutions=(16, 20))
    options.update(overrides)
    return OFAv2Space(**options)


def test_default_plan_follows_ofav2_order_and_skips_inapplicable_phases():
    config = PipelineConfig()
    plan = build_plan(config.train, _tiny_space(), steps_per_epoch=1)
    assert [p.label for p in plan] == [
        "full/1", "kernel/1", "level/1", "level/2", "height/1", "height/2", "height/3", "height/4",
        "depth/1", "depth/2", "expand/1", "expand/2"]
    assert [p.steps for p in plan][:4] == [180, 120, 25, 120]
    height = [p for p in plan if p.phase == "height"]
    assert [p.choices.exits for p in height] == [(4, 5), (3, 4, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)]
    assert [p.lr for p in height] == [1.875e-3, 3.75e-3, 7.5e-3, 1.5e-2]
    # dimensions stay elastic with their last choices; later ones are still fixed
    depth1 = next(p for p in plan if p.label == "depth/1")
    assert depth1.choices == ElasticChoices(kernels=(3, 5, 7), branch_counts=(1, 2, 3),
                                            exits=(1, 2, 3, 4, 5), depths=(3, 4), expands=None)
    single = build_plan(config.train, _tiny_space(early_exits=False, parallel_blocks=False), 1)
    assert [p.phase for p in single] == ["full", "kernel", "depth", "depth", "expand", "expand"]


def test_epochs_scale_and_fractional_epochs():
    config = load_config(overrides=["train.epochs_scale=0.01"])
    plan = build_plan(config.train, _tiny_space(), steps_per_epoch=10)
    full = plan[0]
    assert full.steps == 18 and full.epochs == 2 and full.warmup_steps == 0  # round(5*0.01*10)=0
    assert plan[2].steps == 2 and plan[2].epochs == 1  # 25 * 0.01 * 10 = 2.5 -> 2
    assert all(p.steps >= 1 for p in plan)
    assert lr_at(0, full, 1.0) == pytest.approx(1.0)
    assert lr_at(9, full, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 18)))
    bad = load_config(overrides=["train.phases=[{name: full, parts: [{epochs: 1, lr: 0.1}]},"
                                 "{name: kernel, parts: [{epochs: 1, lr: 0.1, choices: [9]}]}]"])
    with pytest.raises(ConfigError, match="kernel"):
        build_plan(bad.train, _tiny_space(), 1)
    with pytest.raises(ConfigError, match="order"):
        load_config(overrides=["train.phases=[{name: kernel, parts: [{epochs: 1, lr: 0.1}]},"
                               "{name: full, parts: [{epochs: 1, lr: 0.1}]}]"])


def test_sampling_respects_choices_and_is_derived_from_position():
    space = _tiny_space()
    choices = ElasticChoices(kernels=(3, 5), branch_counts=(2, 3), exits=(4, 5))
    for seed in range(20):
        arch = sample_arch(space, choices, np.random.default_rng(seed), 16)
        assert arch["exit"] in (4, 5)
        assert all(d == 4 for d in arch["depths"][: arch["exit"]])
        used = space.used_blocks(arch)
        assert all(bin(b).count("1") >= 2 for b, u in zip(arch["branches"], used, strict=True) if u)
        with_mbconv = [u and b & 1 for b, u in zip(arch["branches"], used, strict=True)]
        assert all(e == 6 for e, m in zip(arch["expands"], with_mbconv, strict=True) if m)
        assert all(k in (3, 5) for k in arch["kernels"])
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 2, 1)


def test_extreme_archs_take_the_cheapest_and_dearest_allowed_branch_masks():
    from pipeline.space.ofav2 import extreme_arch

    space = _tiny_space()
    every = ElasticChoices(kernels=(3, 5, 7), branch_counts=(1, 2, 3), exits=(1, 2, 3, 4, 5),
                           depths=(2, 3, 4), expands=(3, 4, 6))
    assert extreme_arch(space, every, smallest=True) == space.smallest()
    assert extreme_arch(space, every, smallest=False) == space.largest()
    pairs = ElasticChoices(branch_counts=(2,))
    assert set(extreme_arch(space, pairs, smallest=True)["branches"]) == {2 | 4}  # 1x1 conv + transformation
    assert set(extreme_arch(space, pairs, smallest=False)["branches"]) == {1 | 2}  # MBConv + 1x1 conv


def test_a_step_sums_the_gradients_of_its_subnets():
    from pipeline.config import TrainConfig
    from pipeline.supernet import OFAv2Supernet
    from pipeline.train.distributed import WorkerInfo
    from pipeline.train.steps import StepContext, train_step

    space = _tiny_space(parallel_blocks=False)
    net = OFAv2Supernet(space, 4, dropout=0.0, seed=0)
    ctx = StepContext(net=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.0), train=TrainConfig(),
                      info=WorkerInfo(0, 1, torch.device("cpu")))
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(8, 3, 16, 16, generator=gen), torch.randint(0, 4, (8,), generator=gen)
    first, second = space.largest(), space.smallest()

    def grads(archs):
        train_step(ctx, archs, images, labels, lr=0.0, full_phase=False, use_board=False, meta_step=False)
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]

    both, alone_first, alone_second = grads([first, second]), grads([first]), grads([second])
    for together, a, b in zip(both, alone_first, alone_second, strict=True):
        torch.testing.assert_close(together, a + b, rtol=1e-4, atol=1e-6)


def test_a_plan_grown_on_an_initialised_supernet_keeps_unlisted_dimensions_elastic():
    """``train.init_from``: the base trained kernel, depth and expand, so a height-only plan samples all of
    them; 'full' is optional then, and a listed 'full' still trains the largest network alone."""
    height_only = load_config(overrides=["train.init_from=base.pt",
                                         "train.phases=[{name: height, parts: [{epochs: 1, lr: 0.01}]}]"])
    plan = build_plan(height_only.train, _tiny_space(parallel_blocks=False), 1)
    assert [p.label for p in plan] == ["height/1"]
    assert plan[0].choices == ElasticChoices(kernels=(3, 5, 7), branch_counts=None, exits=(1, 2, 3, 4, 5),
                                             depths=(2, 3, 4), expands=(3, 4, 6))
    with_full = load_config(overrides=["train.init_from=base.pt", "train.phases=[{name: full, parts: [{epochs: 1, "
                                       "lr: 0.1}]}, {name: height, parts: [{epochs: 1, lr: 0.01}]}]"])
    full, height = build_plan(with_full.train, _tiny_space(parallel_blocks=False), 1)
    assert full.choices == ElasticChoices() and height.choices.kernels == (3, 5, 7)
    with pytest.raises(ConfigError, match="'full' phase is required"):
        load_config(overrides=["train.phases=[{name: height, parts: [{epochs: 1, lr: 0.01}]}]"])
