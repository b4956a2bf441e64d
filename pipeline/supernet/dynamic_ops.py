"""Dynamic operations: weights stored at their largest size, run at an active size.

- ``make_divisible``: channel counts rounded to multiples of 8, as in MobileNetV3 and OFA.
- ``batch_norm``: a ``nn.BatchNorm2d`` run on its first ``channels`` channels. It follows the
  module's own rules (cumulative average when ``momentum`` is None, ``num_batches_tracked``), so
  BN recalibration treats supernet and extracted modules alike.
- ``ElasticDepthwiseKernel``: OFA's elastic kernel. One depthwise weight at the largest kernel
  size; a smaller kernel is the centre of the next larger (transformed) kernel passed through a
  learned ``k^2 x k^2`` matrix of that layer, shared across channels (7 -> 5 -> 3). The matrices
  start as the identity, so an untrained 3x3 kernel is the plain centre crop. The chain is applied
  as one combined matrix (see ``combined_transform``).

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
        # chain[k] = the (larger, smaller) transformation steps from the largest kernel down to k
        self._chains: dict[int, tuple[tuple[int, int], ...]] = {self.max_kernel: ()}
        chain: tuple[tuple[int, int], ...] = ()
        for larger, smaller in zip(sizes, sizes[1:]):
            self.register_parameter(f"transform_{larger}to{smaller}", nn.Parameter(torch.eye(smaller * smaller)))
            # positions of the centre smaller x smaller window inside a flattened larger x larger kernel
            start = (larger - smaller) // 2
            centre = [(start + r) * larger + start + c for r in range(smaller) for c in range(smaller)]
            self.register_buffer(f"centre_{larger}to{smaller}", torch.tensor(centre), persistent=False)
            chain = chain + ((larger, smaller),)
            self._chains[smaller] = chain

    @property
    def kernel_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self._chains))

    def transform(self, larger: int, smaller: int) -> torch.Tensor:
        """The learned matrix that maps the centre of a ``larger`` kernel to a ``smaller`` one."""
        return getattr(self, f"transform_{larger}to{smaller}")

    def combined_transform(self, size: int) -> torch.Tensor | None:
        """One matrix for the whole chain down to ``size`` (None for the largest kernel).

        Taking the centre of ``crop @ M1`` is selecting columns of ``M1``, so the chain
        ``centre(crop(W) @ M1) @ M2`` equals ``crop(W) @ (M1[:, centre] @ M2)``: one small matmul
        per layer on the channels, whatever the chain's length.
        """
        matrix = None
        for larger, smaller in self._chains[size]:
            step = self.transform(larger, smaller)
            if matrix is None:
                matrix = step
            else:
                matrix = matrix.index_select(1, getattr(self, f"centre_{larger}to{smaller}")) @ step
        return matrix

    def kernel(self, size: int, channels: int) -> torch.Tensor:
        """The ``(channels, 1, size, size)`` kernel of the first ``channels`` channels."""
        weight = self.weight if channels == self.weight.shape[0] else self.weight[:channels]
        chain = self._chains[size]
        if not chain:
            return weight
        first = chain[0][1]
        start = (self.max_kernel - first) // 2
        centre = weight[:, :, start : start + first, start : start + first].reshape(channels, first * first)
        return (centre @ self.combined_transform(size)).reshape(channels, 1, size, size)

    def permute_channels(self, order: torch.Tensor) -> None:
        """Reorder the channels (the matrices are shared across channels and stay)."""
        with torch.no_grad():
            self.weight.copy_(self.weight[order])
