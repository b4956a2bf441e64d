"""Per-epoch subnet evaluation and BatchNorm-safe helpers for the training loop.

``count_correct`` is the one top-1 rule (training evaluation, Cream's board, fine-tuning).
``evaluate_subnet`` extracts a static copy of a subnet, recalibrates its BatchNorm on a fixed
calibration subset and measures validation top-1 - the training supernet's own BN statistics are
never touched. ``frozen_batchnorm_stats`` lets the loop run extra train-mode forwards (Cream's
board and teacher paths) without moving the running statistics. ``DataView`` carries the
normalisation constants and the fixed image subsets every rank uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from pipeline.data import ImageSet, eval_transform
from pipeline.supernet.bn import recalibrate_bn


@dataclass
class DataView:
    """Normalisation, the fixed uint8 calibration subset and the validation images (an ``ImageSet``:
    in memory, or streamed batch by batch), and the data set's evaluation crop."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    calibration_images: torch.Tensor
    val: ImageSet
    batch_size: int
    device: torch.device
    crop: float = 1.0

    def batches(self, images_u8: torch.Tensor, resolution: int) -> Iterator[torch.Tensor]:
        for chunk in images_u8.split(self.batch_size):
            yield self.transform(chunk, resolution)

    def transform(self, images_u8: torch.Tensor, resolution: int) -> torch.Tensor:
        return eval_transform(images_u8.to(self.device), self.mean, self.std, resolution, self.crop)


@contextmanager
def frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Run train-mode forwards without changing any buffer (running stats restored afterwards)."""
    saved = {name: buf.detach().clone() for name, buf in module.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buf in module.named_buffers():
                buf.copy_(saved[name])


def calibrated_copy(net: nn.Module, arch: dict, view: DataView, all_exits: bool = False) -> nn.Module:
    """A static subnet with BatchNorm statistics reset from the calibration subset, in eval mode."""
    subnet = net.extract(arch, all_exits=all_exits).to(view.device)
    recalibrate_bn(subnet, list(view.batches(view.calibration_images, arch["resolution"])))
    subnet.eval()
    return subnet


def count_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """Top-1 hits: rows of ``logits`` whose largest score is on their label."""
    return int((logits.argmax(dim=1) == labels.to(logits.device)).sum())


@torch.no_grad()
def top1(model: nn.Module, view: DataView, resolution: int) -> float:
    correct = seen = 0
    for images, labels in view.val.batches(view.batch_size):
        correct += count_correct(model(view.transform(images, resolution)), labels)
        seen += labels.shape[0]
    return 100.0 * correct / max(1, seen)


def evaluate_subnet(net: nn.Module, arch: dict, view: DataView) -> float:
    """Validation top-1 (%) of ``arch`` after BatchNorm recalibration on a static copy."""
    return top1(calibrated_copy(net, arch, view), view, arch["resolution"])
