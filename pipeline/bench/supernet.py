"""Supernet-versus-extracted-subnet speed benchmark (the library side of ``jobs/bench_supernet.py``).

For each architecture the supernet (with the architecture active) and its extracted static module
are timed side by side in one process: every repeat times one supernet call and one static call
back to back, alternating which goes first, and the ratio of that pair is recorded. The reported
ratio is the median over repeats of these paired ratios, which cancels slow drifts of machine
load (other processes share the CPU). Two measurements:

- ``train_step_ratio``: zero_grad + forward + cross-entropy + backward + SGD step (Nesterov,
  momentum 0.9, weight decay 3e-5), train mode;
- ``inference_ratio``: eval-mode forward under ``torch.inference_mode``.

The same pairs are also timed in process CPU time (``*_ratio_cpu`` columns), a check that is
less sensitive to other processes competing for the cores.

``max_abs_diff`` is the largest absolute logit difference in eval mode before any timing. Every
architecture starts from the supernet's initial weights (the timed SGD steps of one architecture
never carry over to the next), so each row is independent of the order of the architectures.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.space.base import Architecture, arch_id
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet.builder import build_supernet
from pipeline.supernet.network import OFAv2Supernet

VARIANTS = {"SE_B": (False, False), "EE_D": (True, True)}
COLUMNS = ["variant", "arch_id", "train_step_ratio", "inference_ratio", "max_abs_diff"]


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return step


def _inference(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def paired_ratio(first: Callable[[], None], second: Callable[[], None], repeats: int, warmup: int = 2) -> dict:
    """Median over repeats of time(first) / time(second), timed back to back in alternating order.

    Wall-clock time gives ``ratio``; process CPU time gives ``cpu_ratio``, which is less disturbed
    when other processes compete for the cores (it excludes time spent descheduled).
    """
    for _ in range(warmup):
        first()
        second()
    wall: dict[Callable, list[float]] = {first: [], second: []}
    cpu: dict[Callable, list[float]] = {first: [], second: []}
    for repeat in range(repeats):
        for fn in (first, second) if repeat % 2 == 0 else (second, first):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[fn].append(time.perf_counter() - start_wall)
            cpu[fn].append(time.process_time() - start_cpu)
    return {
        "ratio": statistics.median(a / b for a, b in zip(wall[first], wall[second])),
        "cpu_ratio": statistics.median(a / max(b, 1e-9) for a, b in zip(cpu[first], cpu[second])),
        "first_ms": 1e3 * statistics.median(wall[first]),
        "second_ms": 1e3 * statistics.median(wall[second]),
    }


def compare_arch(net: OFAv2Supernet, arch: Architecture, batch: int, resolution: int, repeats: int,
                 seed: int = 0) -> dict:
    """Side-by-side timings of the supernet with ``arch`` active and its extracted module."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, resolution, resolution, generator=gen)
    y = torch.randint(0, net.num_classes, (batch,), generator=gen)
    net.set_active(arch)
    net.eval()
    static = net.extract(arch)
    with torch.inference_mode():
        max_abs_diff = float((net(x) - static(x)).abs().max())
    net.train()
    static.train()

    def sgd(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True, weight_decay=3e-5)

    train = paired_ratio(_train_step(net, sgd(net), x, y), _train_step(static, sgd(static), x, y), repeats)
    net.eval()
    static.eval()
    infer = paired_ratio(_inference(net, x), _inference(static, x), repeats)
    return {
        "train_step_ratio": train["ratio"], "inference_ratio": infer["ratio"], "max_abs_diff": max_abs_diff,
        "train_step_ratio_cpu": train["cpu_ratio"], "inference_ratio_cpu": infer["cpu_ratio"],
        "supernet_train_ms": train["first_ms"], "static_train_ms": train["second_ms"],
        "supernet_inference_ms": infer["first_ms"], "static_inference_ms": infer["second_ms"],
    }


def benchmark_archs(space: OFAv2Space, num_random: int, resolution: int,
                    rng: np.random.Generator) -> list[tuple[str, Architecture]]:
    """min, max and ``num_random`` uniformly sampled architectures, all at ``resolution``."""
    named = [("min", space.smallest()), ("max", space.largest())]
    named += [("random", space.sample(rng)) for _ in range(num_random)]
    return [(kind, space.validate(dict(arch, resolution=resolution))) for kind, arch in named]


def run_benchmark(variants: Sequence[str] = tuple(VARIANTS), batch: int = 32, resolution: int = 64,
                  threads: int = 2, repeats: int = 15, num_random: int = 3, num_classes: int = 200,
                  stage_widths: Sequence[int] = (24, 40, 80, 112, 160), seed: int = 0,
                  log: Callable[[str], None] = print) -> pd.DataFrame:
    """One row per (variant, architecture) with the ratios and the extraction error."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    rows = []
    for variant in variants:
        early_exits, dense = VARIANTS[variant]
        space = OFAv2Space(early_exits=early_exits, dense_skips=dense, stage_widths=stage_widths,
                           resolutions=sorted({resolution, *OFAv2Space().resolutions}))
        net = build_supernet(space, num_classes, seed=seed)
        initial = {name: tensor.clone() for name, tensor in net.state_dict().items()}
        for kind, arch in benchmark_archs(space, num_random, resolution, rng):
            net.load_state_dict(initial)  # every architecture starts from the same weights and BN statistics
            row = {"variant": variant, "arch_id": arch_id(arch), "arch_kind": kind}
            row.update(compare_arch(net, arch, batch, resolution, repeats, seed))
            log(f"{variant} {kind:6s} {row['arch_id']} train {row['train_step_ratio']:.3f} "
                f"({row['supernet_train_ms']:.0f}/{row['static_train_ms']:.0f} ms) inference "
                f"{row['inference_ratio']:.3f} ({row['supernet_inference_ms']:.1f}/{row['static_inference_ms']:.1f} ms) "
                f"diff {row['max_abs_diff']:.1e}")
            rows.append(row)
    frame = pd.DataFrame(rows)
    return frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]
