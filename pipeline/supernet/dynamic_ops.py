"""Dynamic operations: weights stored at their largest size, run at an active size.

- ``make_divisible``: channel counts rounded to multiples of 8, as in MobileNetV3 and OFA.
- ``batch_norm``: a ``nn.BatchNorm2d`` run on its first ``channels`` channels. It follows the
  module's own rules (cumulative average when ``momentum`` is None, ``num_batches_tracked``), so
  BN recalibration treats supernet and extracted modules alike.
- ``ElasticDepthwiseKernel``: OFA's elastic kernel. One depthwise weight at the largest kernel
  size; a smaller kernel is the centre of the next larger (transformed) kernel passed through a
  learned ``k^2 x k^2`` matrix of that layer, shared across channels (7 -> 5 -> 3). The matrices
  start as the identity, so an untrained 3x3 kernel is the plain centre crop.

Weights are sliced with views (``weight[:n]``), never copied, so the active subnet trains the
supernet's own tensors with no per-forward Python bookkeeping beyond a few slices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going below 90% of it."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, channels: int) -> torch.Tensor:
    """``bn`` applied to ``x`` using only its first ``channels`` channels (same rules as the module)."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or bn.running_mean is None
    if channels == bn.num_features:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, use_batch_stats, momentum, bn.eps)
    return F.batch_norm(
        x,
        None if bn.running_mean is None else bn.running_mean[:channels],
        None if bn.running_var is None else bn.running_var[:channels],
        bn.weight[:channels],
        bn.bias[:channels],
        use_batch_stats,
        momentum,
        bn.eps,
    )


class ElasticDepthwiseKernel(nn.Module):
    """A depthwise weight at the largest kernel size plus one transformation matrix per smaller size."""

    def __init__(self, max_channels: int, kernel_sizes: Sequence[int]) -> None:
        super().__init__()
        sizes = sorted(set(kernel_sizes), reverse=True)
        self.max_kernel = sizes[0]
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        # steps[k] = the chain of (parameter name, crop start, size) from the largest kernel to k
        self._steps: dict[int, tuple[tuple[str, int, int], ...]] = {self.max_kernel: ()}
        chain: tuple[tuple[str, int, int], ...] = ()
        for larger, smaller in zip(sizes, sizes[1:]):
            name = f"transform_{larger}to{smaller}"
            self.register_parameter(name, nn.Parameter(torch.eye(smaller * smaller)))
            chain = chain + ((name, (larger - smaller) // 2, smaller),)
            self._steps[smaller] = chain

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self._steps))

    def transform(self, larger: int, smaller: int) -> torch.Tensor:
        """The learned matrix that maps the centre of a ``larger`` kernel to a ``smaller`` one."""
        return getattr(self, f"transform_{larger}to{smaller}")

    def kernel(self, size: int, channels: int) -> torch.Tensor:
        """The ``(channels, 1, size, size)`` kernel of the first ``channels`` channels."""
        weight = self.weight if channels == self.weight.shape[0] else self.weight[:channels]
        for name, start, small in self._steps[size]:
            centre = weight[:, :, start : start + small, start : start + small].reshape(channels, small * small)
            weight = (centre @ getattr(self, name)).reshape(channels, 1, small, small)
        return weight

    def permute_channels(self, order: torch.Tensor) -> None:
        """Reorder the channels (the matrices are shared across channels and stay)."""
        with torch.no_grad():
            self.weight.copy_(self.weight[order])
