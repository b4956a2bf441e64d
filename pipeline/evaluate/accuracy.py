"""BN-recalibrated validation accuracy of a subnet, computed in place on the supernet.

``SubnetScorer`` holds a fixed, seeded calibration subset of training images and the held-out
validation split, preprocessed once per resolution (normalised, resized; cached as float
tensors). ``score(net, arch)`` activates ``arch`` on the supernet, recalibrates BatchNorm running
statistics on the calibration subset at the architecture's resolution, and measures top-1 (in
percent) on the validation split in batches. Early-exit architectures get the accuracy of every
exit up to theirs (``top1@exit1`` ...); ``top1`` is the chosen exit's.

Top-1's forward passes follow ``evaluate.precision`` (``pipeline.supernet.precision``: autocast
to bf16, nothing for fp32; the logits are compared in float32); BN recalibration always runs in
fp32, without autocast.

Nothing is copied: recalibration overwrites the supernet's BN statistics, which is harmless
because every measurement recalibrates first. Callers that train the supernet must not share it
with a scorer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pipeline.data.augment import eval_transform
from pipeline.space.base import Architecture
from pipeline.supernet.bn import recalibrate_bn
from pipeline.supernet.precision import FP32, ForwardPrecision, float_logits


class SubnetScorer:
    """Calibration subset + validation split, and the recalibrate-then-measure procedure."""

    def __init__(
        self,
        calibration_images: torch.Tensor,
        val_images: torch.Tensor,
        val_labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        calibration_batch_size: int = 256,
        eval_batch_size: int = 512,
        precision: ForwardPrecision = FP32,
    ) -> None:
        if val_images.shape[0] == 0:
            raise ValueError("the validation split is empty; accuracy cannot be measured")
        self.calibration_images = calibration_images
        self.val_images = val_images
        self.val_labels = val_labels
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.calibration_batch_size = calibration_batch_size
        self.eval_batch_size = eval_batch_size
        self.precision = precision
        self._inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def inputs(self, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed (calibration, validation) float tensors at ``resolution`` (cached)."""
        if resolution not in self._inputs:
            self._inputs[resolution] = (
                eval_transform(self.calibration_images, self.mean, self.std, resolution),
                eval_transform(self.val_images, self.mean, self.std, resolution),
            )
        return self._inputs[resolution]

    def calibration_batches(self, resolution: int) -> list[torch.Tensor]:
        calibration, _ = self.inputs(resolution)
        return list(torch.split(calibration, self.calibration_batch_size))

    @torch.inference_mode()
    def exit_accuracies(self, module: nn.Module, resolution: int, multi_exit: bool) -> list[float]:
        """Top-1 (percent) of ``module`` on the validation split, per exit when ``multi_exit``."""
        _, val = self.inputs(resolution)
        module.eval()
        correct: torch.Tensor | None = None
        for images, labels in zip(torch.split(val, self.eval_batch_size), torch.split(self.val_labels, self.eval_batch_size)):
            with self.precision.autocast():
                outputs = module.forward_exits(images) if multi_exit else [module(images)]
            if isinstance(outputs, torch.Tensor):
                outputs = [outputs]
            outputs = float_logits(outputs)
            hits = torch.stack([(logits.argmax(dim=1) == labels).sum() for logits in outputs])
            correct = hits if correct is None else correct + hits
        assert correct is not None
        return (100.0 * correct.double() / len(self.val_labels)).tolist()

    def score(self, net: nn.Module, arch: Architecture) -> dict[str, float]:
        """Activate ``arch`` on supernet ``net``, recalibrate BN, and measure top-1 per exit."""
        arch = net.set_active(arch)
        resolution = arch["resolution"]
        recalibrate_bn(net, self.calibration_batches(resolution), arch=arch)
        early_exit = "exit" in arch
        accuracies = self.exit_accuracies(net, resolution, multi_exit=early_exit)
        metrics = {"top1": accuracies[-1]}
        if early_exit:
            metrics.update({f"top1@exit{index + 1}": value for index, value in enumerate(accuracies)})
        return metrics
