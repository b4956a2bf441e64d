"""Training losses: label-smoothed CE, knowledge distillation, ENS-KD, multi-exit and Cream's mix.

- ``multi_exit_loss``: sum_i w_i CE(z_i, y) over the exits present (OFAv2's maximal early-exit
  network in the full phase).
- ``ens_kd_target``: softmax(sum_i a_i z_i), the ENS-KD target of a multi-exit teacher.
- ``kd_loss``: CE(student, y) + kd_weight * soft CE(student, target).
- ``cream_loss``: (rho * soft CE + (2 - rho) * CE) / 2, with rho from the meta network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c p_c log softmax(logits)_c."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def multi_exit_loss(exit_logits: Sequence[torch.Tensor], labels: torch.Tensor,
                    weights: Sequence[float], label_smoothing: float = 0.0) -> torch.Tensor:
    """Weighted sum of the exits' cross-entropies (exit i uses weights[i])."""
    if len(exit_logits) > len(weights):
        raise ValueError(f"{len(exit_logits)} exits but only {len(weights)} weights")
    return sum(
        w * F.cross_entropy(z, labels, label_smoothing=label_smoothing)
        for w, z in zip(weights[: len(exit_logits)], exit_logits, strict=True)
    )


def ens_kd_target(exit_logits: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """ENS-KD target softmax(sum_i a_i z_i) of a multi-exit teacher (exit i uses weights[i])."""
    if len(exit_logits) > len(weights):
        raise ValueError(f"{len(exit_logits)} exits but only {len(weights)} weights")
    combined = sum(a * z for a, z in zip(weights[: len(exit_logits)], exit_logits, strict=True))
    return F.softmax(combined, dim=1)


def kd_loss(student_logits: torch.Tensor, labels: torch.Tensor, target_probs: torch.Tensor | None,
            kd_weight: float = 1.0, label_smoothing: float = 0.0) -> torch.Tensor:
    """CE(student, y) + kd_weight * soft CE(student, teacher target); plain CE without a target."""
    loss = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    if target_probs is not None and kd_weight > 0:
        loss = loss + kd_weight * soft_cross_entropy(student_logits, target_probs)
    return loss


def cream_loss(student_logits: torch.Tensor, labels: torch.Tensor, target_probs: torch.Tensor,
               rho: torch.Tensor | float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cream's student loss (rho * KD + (2 - rho) * CE) / 2."""
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    kd = soft_cross_entropy(student_logits, target_probs)
    return (rho * kd + (2.0 - rho) * ce) / 2.0
