"""BN-recalibrated validation accuracy of a subnet, computed in place on the supernet.

``SubnetScorer`` holds a fixed, seeded calibration subset of training images and the held-out
validation split; in memory they are preprocessed once per resolution (normalised, resized;
cached as float tensors), streamed they are preprocessed per candidate. ``score(net, arch)`` activates ``arch`` on the supernet, recalibrates BatchNorm running
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

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from pipeline.data.augment import eval_transform
from pipeline.data.imageset import ImageSet, TensorImageSet
from pipeline.space.base import Architecture
from pipeline.supernet.bn import recalibrate_bn
from pipeline.supernet.precision import FP32, ForwardPrecision, float_logits


class SubnetScorer:
    """Calibration subset + validation split, and the recalibrate-then-measure procedure.

    Both subsets are ``ImageSet``s. In memory (``TensorImageSet``) they are preprocessed once per
    resolution and cached as float tensors; streamed (``FileImageSet``: too large to keep) they are
    decoded and preprocessed batch by batch for every candidate, as are decoded subsets of streamed
    data (``cache_floats=False``: float copies per resolution would be four times their size).
    ``crop`` is the data set's evaluation crop (``Splits.eval_crop``)."""

    def __init__(
        self,
        calibration: ImageSet,
        val: ImageSet,
        mean: Sequence[float],
        std: Sequence[float],
        calibration_batch_size: int = 256,
        eval_batch_size: int = 512,
        precision: ForwardPrecision = FP32,
        crop: float = 1.0,
        cache_floats: bool = True,
    ) -> None:
        if len(val) == 0:
            raise ValueError("the validation split is empty; accuracy cannot be measured")
        self.calibration = calibration
        self.val = val
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.calibration_batch_size = calibration_batch_size
        self.eval_batch_size = eval_batch_size
        self.precision = precision
        self.crop = crop
        self.in_memory = cache_floats and isinstance(calibration, TensorImageSet) and isinstance(val, TensorImageSet)
        self._inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def val_labels(self) -> torch.Tensor:
        return self.val.labels

    def _transform(self, images: torch.Tensor, resolution: int) -> torch.Tensor:
        return eval_transform(images, self.mean, self.std, resolution, self.crop)

    def inputs(self, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed (calibration, validation) float tensors at ``resolution`` (cached; in memory only)."""
        assert isinstance(self.calibration, TensorImageSet) and isinstance(self.val, TensorImageSet)
        if resolution not in self._inputs:
            self._inputs[resolution] = (
                self._transform(self.calibration.images, resolution),
                self._transform(self.val.images, resolution),
            )
        return self._inputs[resolution]

    def calibration_batches(self, resolution: int) -> list[torch.Tensor]:
        if not self.in_memory:
            return [self._transform(images, resolution)
                    for images, _ in self.calibration.batches(self.calibration_batch_size)]
        calibration, _ = self.inputs(resolution)
        return list(torch.split(calibration, self.calibration_batch_size))

    def val_batches(self, resolution: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.in_memory:
            for images, labels in self.val.batches(self.eval_batch_size):
                yield self._transform(images, resolution), labels
            return
        _, val = self.inputs(resolution)
        yield from zip(torch.split(val, self.eval_batch_size), torch.split(self.val.labels, self.eval_batch_size))

    @torch.inference_mode()
    def exit_accuracies(self, module: nn.Module, resolution: int, multi_exit: bool) -> list[float]:
        """Top-1 (percent) of ``module`` on the validation split, per exit when ``multi_exit``."""
        module.eval()
        correct: torch.Tensor | None = None
        seen = 0
        for images, labels in self.val_batches(resolution):
            with self.precision.autocast():
                outputs = module.forward_exits(images) if multi_exit else [module(images)]
            if isinstance(outputs, torch.Tensor):
                outputs = [outputs]
            outputs = float_logits(outputs)
            hits = torch.stack([(logits.argmax(dim=1) == labels).sum() for logits in outputs])
            correct = hits if correct is None else correct + hits
            seen += labels.shape[0]
        assert correct is not None
        return (100.0 * correct.double() / seen).tolist()

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
