"""OFA's own implementation, the reference the import tests and ``jobs/bench_ofa_import.py`` compare against.

The ``ofa`` package (PyPI, 0.1.0.post202307202001, installed by ``make setup`` with ``--no-deps``)
imports ``torchvision`` and ``gdown`` for data loading and downloads only. Where they are missing,
``ofa_mobilenet_v3`` puts empty stand-ins for exactly the names OFA touches at import time into
``sys.modules`` before importing OFA's network; OFA's model code never calls them. Nothing in the
product imports this module: only tests and benchmarks do.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import torch


def _install_stand_ins() -> None:
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    transforms = types.ModuleType("torchvision.transforms")
    transforms.RandomResizedCrop = type("RandomResizedCrop", (), {})
    transforms.RandomCrop = type("RandomCrop", (), {})
    stand_ins = {
        "torchvision": types.ModuleType("torchvision"),
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": types.ModuleType("torchvision.transforms.functional"),
        "torchvision.datasets": types.ModuleType("torchvision.datasets"),
    }
    for name, module in stand_ins.items():
        sys.modules.setdefault(name, module)
    if importlib.util.find_spec("gdown") is None:
        sys.modules.setdefault("gdown", types.ModuleType("gdown"))


def ofa_network(name: str, **kwargs):
    """One of OFA's supernet classes (``OFAMobileNetV3``, ``OFAProxylessNASNets``, ``OFAResNets``)."""
    _install_stand_ins()
    from ofa.imagenet_classification.elastic_nn import networks

    return getattr(networks, name)(**kwargs)


def ofa_mobilenet_v3(n_classes: int, width_mult: float, seed: int = 0):
    """OFA's ``OFAMobileNetV3`` (k357, e346, d234) with every tensor random and far from its init.

    Kernel matrices get random entries (not the identity), BN statistics random positive
    variances and means, so a mapping mistake in any tensor changes the logits.
    """
    net = ofa_network("OFAMobileNetV3", n_classes=n_classes, width_mult=width_mult, ks_list=[3, 5, 7],
                      expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4], dropout_rate=0.1)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.dtype == torch.long:
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("_matrix"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor.shape[0] ** 0.5)
            elif name.endswith("bn.weight") or name.endswith("bn.bn.weight"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            else:
                scale = 1.0 / max(1, tensor[0].numel()) ** 0.5 if tensor.dim() > 1 else 0.1
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale)
    return net.eval()


def ofa_subnet_config(arch: dict) -> dict:
    """The project's architecture as OFA's ``set_active_subnet`` keywords (``ks``, ``e``, ``d``)."""
    return {"ks": list(arch["kernels"]), "e": list(arch["expands"]), "d": list(arch["depths"])}
