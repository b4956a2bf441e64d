"""The OFAv2 supernet: exact extraction for every variant, and each elastic mechanism.

Networks are tiny (stage widths 8..24, 24 px inputs) and their BN statistics, affine parameters
and kernel transformation matrices are randomised, so a wrong copy or a missing mechanism shows.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import ArchitectureError
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet import OFAv2Supernet
from pipeline.supernet.bn import recalibrate_bn
from pipeline.supernet.layers import MBConv

TINY = dict(stage_widths=(8, 8, 16, 16, 24), resolutions=(16, 24))
VARIANTS = list(itertools.product((False, True), (False, True), (False, True)))
PLAIN_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Hardswish, nn.Hardsigmoid, nn.Linear, nn.Dropout,
                 nn.MaxPool2d, nn.Sequential, nn.ModuleList)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@torch.no_grad()
def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, transformation matrices and classifiers."""
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            module.weight.copy_(0.5 + torch.rand(n, generator=gen))
            module.bias.copy_(0.2 * torch.randn(n, generator=gen))
        elif isinstance(module, nn.Linear):
            module.weight.copy_(0.2 * torch.randn(module.weight.shape, generator=gen))
    for name, param in net.named_parameters():
        if "transform_" in name:
            param.add_(0.2 * torch.randn(param.shape, generator=gen))
    return net


def make_net(seed: int = 0, **options) -> tuple[OFAv2Space, OFAv2Supernet]:
    space = OFAv2Space(**TINY, **options)
    return space, randomize(OFAv2Supernet(space, num_classes=5, seed=seed), seed).eval()


def images(n: int, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    return shift + torch.randn(n, 3, 24, 24, generator=torch.Generator().manual_seed(seed))


def max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize(("early_exits", "dense", "parallel"), VARIANTS,
                         ids=[OFAv2Space(early_exits=e, dense_skips=d, parallel_blocks=p).variant_name
                              for e, d, p in VARIANTS])
@torch.no_grad()
def test_extracted_subnet_equals_supernet(early_exits, dense, parallel):
    space, net = make_net(early_exits=early_exits, dense_skips=dense, parallel_blocks=parallel)
    rng = np.random.default_rng(0)
    x = images(3, 1)
    archs = [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(3)]
    sizes = []
    for arch in archs:
        net.set_active(arch)
        subnet = net.extract(arch)
        assert not subnet.training
        assert all(isinstance(m, PLAIN_MODULES) or type(m).__module__ == "pipeline.supernet.layers"
                   for m in subnet.modules())
        expected = net(x)
        assert expected.shape == (3, 5) and float(expected.detach().std()) > 1e-3
        assert float((subnet(x) - expected).abs().max()) <= 1e-5
        sizes.append(sum(p.numel() for p in subnet.parameters()))
        multi = net.extract(arch, all_exits=True)
        outputs = multi(x)
        assert isinstance(outputs, tuple) and len(outputs) == (arch.get("exit", 5) if early_exits else 1)
        assert max_diff(outputs, net.forward_exits(x)) <= 1e-5
    assert sizes[0] < min(sizes[1:]) and sizes[1] == max(sizes)
    # the supernet keeps its own weights: changing the extracted copy changes nothing
    before = net(x)
    with torch.no_grad():
        for p in subnet.parameters():
            p.add_(1.0)
    assert torch.equal(before, net(x))


def test_set_active_rejects_invalid_arch():
    space, net = make_net()
    arch = space.largest()
    arch["expands"][7] = 5
    with pytest.raises(ArchitectureError, match=r"field 'expands\[7\]' is 5; allowed values: 3, 4, 6"):
        net.set_active(arch)


# The worked table of dense skips in docs/methods.md: per depth D, the block outputs (1-based) summed into
# the input of blocks 2, 3, 4 and into the stage output.
DENSE_TABLE = {
    2: {"inputs": {2: [1]}, "output": [2]},
    3: {"inputs": {2: [1], 3: [2]}, "output": [3, 1]},
    4: {"inputs": {2: [1], 3: [2], 4: [3, 1]}, "output": [4, 1, 2]},
}


class _PowerBlock(nn.Module):
    """Records its input and returns 2**j everywhere, so any sum of outputs names its terms."""

    def __init__(self, j: int) -> None:
        super().__init__()
        self.j = j
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return torch.full_like(x, float(2 ** self.j))


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_dense_skips_follow_the_rule(depth):
    """Hand-built blocks: each block's input and the stage output are the table's sums."""
    from pipeline.supernet.layers import Stage

    blocks = [_PowerBlock(j) for j in range(1, depth + 1)]
    x = torch.full((1, 1, 1, 1), 1000.0)
    out = Stage(blocks, dense=True)(x)
    assert float(blocks[0].seen) == 1000.0  # block 1 gets the stage input
    for j, terms in DENSE_TABLE[depth]["inputs"].items():
        assert float(blocks[j - 1].seen) == sum(2 ** t for t in terms), (depth, j)
    assert float(out) == sum(2 ** t for t in DENSE_TABLE[depth]["output"])
    plain = Stage([_PowerBlock(j) for j in range(1, depth + 1)], dense=False)(x)
    assert float(plain) == 2 ** depth


def test_dense_skips_in_the_supernet_follow_the_table():
    """Hooks on the real blocks of a dense supernet (depths 2, 3 and 4), and its extracted copy."""
    space, net = make_net(early_exits=False, dense_skips=True)
    arch = space.largest()
    arch["depths"] = [2, 3, 4, 4, 3]
    x = images(2)
    net.set_active(arch)
    subnet = net.extract(arch)
    for model, stages in ((net, net.stages), (subnet, [stage.blocks for stage in subnet.stages])):
        inputs: dict[tuple[int, int], torch.Tensor] = {}
        outputs: dict[tuple[int, int], torch.Tensor] = {}
        handles = []
        for s, stage in enumerate(stages):
            for j, block in enumerate(stage, start=1):
                def hook(module, args, result, key=(s, j), inputs=inputs, outputs=outputs):
                    inputs[key], outputs[key] = args[0].detach(), result.detach()
                handles.append(block.register_forward_hook(hook))
        head = model.heads[-1]
        head_input: list[torch.Tensor] = []
        handles.append(head.register_forward_pre_hook(
            lambda module, args, seen=head_input: seen.append(args[0].detach())))
        with torch.no_grad():
            model(x)
        for handle in handles:
            handle.remove()
        for s, depth in enumerate(arch["depths"]):
            for j, terms in DENSE_TABLE[depth]["inputs"].items():
                expected = sum(outputs[(s, t)] for t in terms)
                assert torch.allclose(inputs[(s, j)], expected, atol=1e-6), (s, j)
            stage_output = sum(outputs[(s, t)] for t in DENSE_TABLE[depth]["output"])
            if s + 1 < len(arch["depths"]):
                assert torch.allclose(inputs[(s + 1, 1)], stage_output, atol=1e-6), s
            else:
                assert torch.allclose(head_input[0], stage_output, atol=1e-6)
            assert (s, depth + 1) not in outputs  # inactive blocks never run


def test_exit_heads_and_forward_exits():
    space, net = make_net(early_exits=True)
    assert len(net.heads) == 5
    assert len(make_net(early_exits=False)[1].heads) == 1
    x = images(2)
    for exit_number in range(1, 6):
        arch = dict(space.largest(), exit=exit_number)
        net.set_active(arch)
        outputs = net.forward_exits(x)
        assert len(outputs) == exit_number == net.active_exit
        assert torch.equal(outputs[-1], net(x))
        assert net.extract(arch).heads[0].classifier.in_features == 8 * net.stage_widths[exit_number - 1]
    assert float((outputs[0] - outputs[-1]).detach().abs().max()) > 1e-3


def test_branch_masks_select_branches():
    space, net = make_net(parallel_blocks=True)
    x = images(2)
    base = space.largest()
    outputs = {}
    for mask in range(1, 8):
        arch = dict(base, branches=[mask] + base["branches"][1:])
        net.set_active(arch)
        outputs[mask] = net(x).detach()
        block = net.extract(arch).stages[0].blocks[0]
        kinds = [type(b) for b in block.branches]
        assert (MBConv in kinds) == bool(mask & 1)
        assert len(kinds) == bin(mask).count("1")
        if mask & 4:  # the transformation branch of a strided block starts with max-pooling
            assert any(isinstance(b[0], nn.MaxPool2d) for b in block.branches if isinstance(b, nn.Sequential))
    for a, b in itertools.combinations(outputs.values(), 2):
        assert float((a - b).abs().max()) > 1e-4


@pytest.mark.parametrize("mask", range(1, 8))
@torch.no_grad()
def test_identity_shortcut_belongs_to_the_mbconv_branch(mask):
    """docs/methods.md: MBConv plus identity (stride 1, equal widths); no MBConv bit, no identity term."""
    space, net = make_net(parallel_blocks=True)
    arch = dict(space.largest(), branches=[7, mask] + [7] * 18)
    net.set_active(arch)
    block = net.stages[0][1]  # stride 1, 8 -> 8 channels
    x = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(mask))
    branches = {1: block.mbconv, 2: block.conv1x1, 4: block.transform}
    expected = sum(branch(x) for bit, branch in branches.items() if mask & bit)
    if mask & 1:
        expected = expected + x
    assert float((block(x) - expected).abs().max()) <= 1e-5
    static = net.extract(arch).stages[0].blocks[1]
    assert float((static(x) - expected).abs().max()) <= 1e-5
    strided = net.stages[0][0]  # stride 2: never an identity term
    strided.set_active(7, 6, mask)
    y = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(10 + mask))
    parts = [b(y) for bit, b in ((1, strided.mbconv), (2, strided.conv1x1), (4, strided.transform)) if mask & bit]
    assert float((strided(y) - sum(parts)).abs().max()) <= 1e-5


def test_kernel_transformation_is_learned_not_a_crop():
    _, net = make_net(early_exits=False)
    depthwise = net.stages[1][0].mbconv.depthwise
    full = depthwise.weight[:8]
    k5 = depthwise.kernel(5, 8)
    k3 = depthwise.kernel(3, 8)
    assert k3.shape == (8, 1, 3, 3)
    assert float((k3 - full[:, :, 2:5, 2:5]).detach().abs().max()) > 1e-3  # matrices are not the identity
    expected5 = (full[:, :, 1:6, 1:6].reshape(8, 25) @ depthwise.transform(7, 5)).reshape(8, 1, 5, 5)
    expected3 = (expected5[:, :, 1:4, 1:4].reshape(8, 9) @ depthwise.transform(5, 3)).reshape(8, 1, 3, 3)
    assert torch.allclose(k5, expected5) and torch.allclose(k3, expected3)
    with torch.no_grad():  # with identity matrices the smaller kernel is the plain centre crop
        depthwise.transform(7, 5).copy_(torch.eye(25))
        depthwise.transform(5, 3).copy_(torch.eye(9))
    assert torch.equal(depthwise.kernel(3, 8), full[:, :, 2:5, 2:5])
    # the matrices are trained through the active kernel
    space = net.space
    net.set_active(dict(space.largest(), kernels=[3] * 20))
    net.train()
    net(images(4)).sum().backward()
    assert float(depthwise.transform(5, 3).grad.abs().sum()) > 0
    assert float(depthwise.transform(7, 5).grad.abs().sum()) > 0


@torch.no_grad()
def test_reorganize_channels_sorts_by_importance_and_keeps_function():
    space, net = make_net(early_exits=False)
    x = images(2)
    largest = space.largest()
    smaller = dict(largest, expands=[3] * 20)
    net.set_active(smaller)
    small_before = net(x)
    net.set_active(largest)
    before = net(x)
    mbconv = net.stages[1][1].mbconv
    importance = mbconv.project_conv.weight.abs().sum((0, 2, 3))
    assert not torch.all(importance[:-1] >= importance[1:])  # not already sorted
    original_importance = importance.clone()
    net.reorganize_channels()
    assert float((net(x) - before).abs().max()) <= 1e-5
    for stage in net.stages:
        for block in stage:
            importance = block.mbconv.project_conv.weight.abs().sum((0, 2, 3))
            assert torch.all(importance[:-1] >= importance[1:])
    after = mbconv.project_conv.weight.abs().sum((0, 2, 3))
    assert torch.allclose(after, original_importance.sort(descending=True).values)
    net.set_active(smaller)  # a smaller expand now takes the most important channels
    assert float((net(x) - small_before).abs().max()) > 1e-4


@torch.no_grad()
def test_bn_recalibration_matches_extracted_module():
    space, net = make_net(early_exits=True, dense_skips=True)
    rng = np.random.default_rng(3)
    arch = space.sample(rng)
    arch["exit"] = 4
    batches = [images(4, seed, shift=2.0) for seed in (5, 6, 7)]
    weights = {k: v.clone() for k, v in net.named_parameters()}
    stats_before = net.stem[1].running_mean.clone()
    subnet = net.extract(arch)
    multi = net.extract(arch, all_exits=True)
    recalibrate_bn(net, batches, arch=arch)
    recalibrate_bn(subnet, batches)
    recalibrate_bn(multi, [(b, None) for b in batches])
    assert not net.training and net.stem[1].momentum == 0.1
    assert not torch.allclose(net.stem[1].running_mean, stats_before)
    assert all(torch.equal(weights[k], v) for k, v in net.named_parameters())
    x = images(2)
    assert float((net(x) - subnet(x)).abs().max()) <= 1e-5
    assert max_diff(net.forward_exits(x), multi(x)) <= 1e-5
    # recalibrating is the cumulative average over all batches, not the last batch only
    mean = torch.stack([net.stem[0](b).mean((0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(net.stem[1].running_mean, mean, atol=1e-4)


def test_weight_cache_without_autograd_follows_weight_updates():
    space, net = make_net(early_exits=False)
    x = images(2, 4)
    arch = space.sample(np.random.default_rng(8))
    net.set_active(arch)
    with torch.no_grad():
        cached = net(x)
    assert torch.allclose(cached, net(x), atol=1e-6)  # autograd path: same function
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    net(x).square().sum().backward()
    optimizer.step()
    with torch.no_grad():
        after_step = net(x)
        assert float((after_step - cached).abs().max()) > 1e-4
        assert float((after_step - net.extract(arch)(x)).abs().max()) <= 1e-5
        other = dict(space.largest())
        net.set_active(other)
        assert float((net(x) - net.extract(other)(x)).abs().max()) <= 1e-5
