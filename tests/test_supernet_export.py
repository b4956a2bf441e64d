"""Extracted subnets outside the supernet: ONNX Runtime parity, cost counting, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import CheckpointError, ProfileError
from pipeline.onnx_runtime import ort_session, provider_name
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet import OFAv2Supernet
from pipeline.supernet.bn import recalibrate_bn
from pipeline.supernet.checkpoint import load_supernet, save_supernet
from pipeline.supernet.costs import ArchCostCounter, arch_costs, count_costs
from pipeline.supernet.export import export_onnx

TINY = dict(stage_widths=(8, 8, 16, 16, 24), resolutions=(16, 24))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def images(n: int, seed: int = 0, resolution: int = 24) -> torch.Tensor:
    return torch.randn(n, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def trained_net() -> OFAv2Supernet:
    """A tiny EE_DP supernet whose BN statistics and classifiers are non-trivial."""
    space = OFAv2Space(parallel_blocks=True, **TINY)
    net = OFAv2Supernet(space, num_classes=4, seed=0)
    with torch.no_grad():
        for head in net.heads:
            head.classifier.weight.mul_(30.0)
    recalibrate_bn(net, [images(4, seed) + 1.0 for seed in range(3)], arch=space.largest())
    return net.eval()


@pytest.mark.parametrize("all_exits", [False, True], ids=["single", "all_exits"])
def test_onnx_runtime_matches_torch(trained_net, tmp_path, all_exits):
    space = trained_net.space
    arch = space.sample(np.random.default_rng(2))
    arch["exit"] = 3
    subnet = trained_net.extract(arch, all_exits=all_exits)
    path = export_onnx(subnet, tmp_path / "models" / "subnet.onnx", resolution=24, batch_size=2)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    session = ort_session(path, "cpu", threads=1)
    x = images(2, 9)
    outputs = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = subnet(x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(outputs) == len(expected) == (3 if all_exits else 1)
    assert [o.name for o in session.get_outputs()] == (["exit_1", "exit_2", "exit_3"] if all_exits else ["logits"])
    for got, want in zip(outputs, expected):
        assert float(want.abs().max()) > 1e-2
        assert np.abs(got - want.numpy()).max() <= 1e-4


def test_ort_session_errors(tmp_path):
    with pytest.raises(ProfileError, match="TensorrtExecutionProvider is not available"):
        ort_session(tmp_path / "x.onnx", provider="tensorrt")
    with pytest.raises(ProfileError, match="unknown execution provider 'tpu'"):
        provider_name("tpu")
    assert provider_name("cuda") == "CUDAExecutionProvider"


def test_costs_count_the_extracted_module(trained_net):
    space = trained_net.space
    small, large = space.smallest(), space.largest()
    for arch in (small, large, space.sample(np.random.default_rng(4))):
        subnet = trained_net.extract(arch)
        costs = count_costs(subnet, arch["resolution"])
        assert costs["params_m"] == sum(p.numel() for p in subnet.parameters()) / 1e6
        assert costs["macs_m"] > 0
        assert arch_costs(trained_net, arch) == costs
    low = count_costs(trained_net.extract(large), 16)
    high = count_costs(trained_net.extract(large), 24)
    assert high["macs_m"] > 1.8 * low["macs_m"] and high["params_m"] == low["params_m"]
    assert arch_costs(trained_net, small)["macs_m"] < arch_costs(trained_net, large)["macs_m"] / 5
    wide = OFAv2Supernet(OFAv2Space(parallel_blocks=True, width_mult=1.5, **TINY), num_classes=4)
    assert arch_costs(wide, large)["macs_m"] > arch_costs(trained_net, large)["macs_m"]
    # depthwise convolutions are counted: larger kernels cost more MACs
    narrow = dict(large, exit=1, kernels=[3] * 20, branches=[1] * 20)
    wide_kernel = dict(narrow, kernels=[7] * 20)
    extra = arch_costs(trained_net, wide_kernel)["macs_m"] - arch_costs(trained_net, narrow)["macs_m"]
    assert extra > 0
    counter = ArchCostCounter(trained_net)
    assert counter(large) == arch_costs(trained_net, large) and counter(large) is not counter(large)


def test_checkpoint_round_trip(trained_net, tmp_path):
    arch = trained_net.space.sample(np.random.default_rng(5))
    path = save_supernet(tmp_path / "ckpt" / "supernet.pt", trained_net, extra={"phase": "kernel", "epoch": 3})
    net, extra = load_supernet(path)
    assert extra == {"phase": "kernel", "epoch": 3}
    assert net.space == trained_net.space and net.num_classes == 4
    net.eval()
    trained_net.set_active(arch)
    net.set_active(arch)
    x = images(2, 3)
    with torch.no_grad():
        assert torch.equal(net(x), trained_net(x))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_supernet(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_supernet(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": nn.Linear(2, 2).state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not an OFAv2 supernet checkpoint"):
        load_supernet(foreign)
    space = OFAv2Space(**TINY)
    path = save_supernet(tmp_path / "ok.pt", OFAv2Supernet(space, num_classes=3))
    payload = torch.load(path, weights_only=True)
    payload["num_classes"] = 7
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not match its network"):
        load_supernet(path)
