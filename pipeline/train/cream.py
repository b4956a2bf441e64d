"""Cream of the Crop: the prioritized path board and the meta network that picks a teacher.

``PrioritizedBoard`` keeps the best paths seen so far (``board_size``). Each entry holds a path,
its top-1 on held-out images (never the training batch), its MACs and its softmax output on a few
stored held-out images. A candidate enters when the board is not full, when it beats the worst
entry's accuracy by ``margin`` points, or when it beats the worst entry's accuracy with fewer MACs;
the worst entry is then dropped ("pick and drop"). A path already on the board refreshes its entry.

``MetaNetwork`` scores a board entry as the teacher of the current student from the difference of
the student's and the entry's softmax outputs on the stored images; the score (in (0, 1)) of the
chosen (highest-scoring) entry is the student loss weight rho - read from that same entry.

``meta_gradient`` trains the meta network through one simulated student step. With student loss
L(theta, rho) = (rho KD + (2 - rho) CE) / 2, the simulated weights theta' = theta - lr grad L are
linear in rho, so the exact meta-gradient is
    dL_val(theta')/drho = -lr/2 * < grad L_val(theta'), grad KD(theta) - grad CE(theta) >,
over every student parameter (the whole student, not one tensor), with L_val the CE on held-out
images evaluated at theta' through ``torch.func.functional_call``. It then flows to the meta
network through rho. No second-order graph is needed.

``board_prior`` turns the board into per-decision sampling weights so student sampling is really
weighted towards the board's choices (mixed with uniform by ``sampling_mix``).

``teacher_candidates`` are the board entries that may teach a student: a teacher runs at the
student's resolution, so an entry whose path is the student's at another resolution is the
student itself and never teaches it. ``board_record`` / ``cream_answer`` carry the board (best
path first) through the supernet checkpoint's ``extra``: the best path is Cream's answer ("no
separate search is needed"), and the search stage evaluates it into the archive (``source=cream``,
``pipeline.cream_answer``).
The board and meta-gradient images are a seeded slice of the training split
(``pipeline.data.hold_out_from_train``), recorded in the same ``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from pipeline.space.base import arch_id
from pipeline.space.ofav2 import ArchPrior


@dataclass
class BoardEntry:
    arch: dict
    accuracy: float
    macs: float
    probs: torch.Tensor  # softmax on the stored images, n_stored x classes


class PrioritizedBoard:
    """The prioritized path board with Cream's entry rules (see the module docstring)."""

    def __init__(self, size: int = 10, margin: float = 5.0) -> None:
        self.size = size
        self.margin = margin
        self.entries: list[BoardEntry] = []

    def __len__(self) -> int:
        return len(self.entries)

    def worst_index(self) -> int:
        """Lowest accuracy; among equals the one with more MACs."""
        return min(range(len(self.entries)),
                   key=lambda i: (self.entries[i].accuracy, -self.entries[i].macs))

    def admits(self, accuracy: float, macs: float) -> bool:
        if len(self.entries) < self.size:
            return True
        worst = self.entries[self.worst_index()]
        if accuracy > worst.accuracy + self.margin:
            return True
        return accuracy > worst.accuracy and macs < worst.macs

    def find(self, arch: dict) -> BoardEntry | None:
        key = arch_id(arch)
        return next((e for e in self.entries if arch_id(e.arch) == key), None)

    def could_enter(self, accuracy: float) -> bool:
        """Whether some MAC count would let a new path of this accuracy in (MACs are costly)."""
        return len(self.entries) < self.size or accuracy > self.entries[self.worst_index()].accuracy

    def consider(self, entry: BoardEntry) -> bool:
        """Offer a path; returns True when it entered (a known path only refreshes its entry)."""
        key = arch_id(entry.arch)
        for index, existing in enumerate(self.entries):
            if arch_id(existing.arch) == key:
                self.entries[index] = entry
                return False
        if not self.admits(entry.accuracy, entry.macs):
            return False
        self.entries.append(entry)
        if len(self.entries) > self.size:
            del self.entries[self.worst_index()]
        return True

    def best(self) -> BoardEntry | None:
        if not self.entries:
            return None
        return max(self.entries, key=lambda e: (e.accuracy, -e.macs))

    def state_dict(self) -> dict:
        return {"size": self.size, "margin": self.margin, "entries": [
            {"arch": e.arch, "accuracy": e.accuracy, "macs": e.macs, "probs": e.probs.cpu()}
            for e in self.entries]}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.margin = state["size"], state["margin"]
        self.entries = [BoardEntry(**entry) for entry in state["entries"]]


def teacher_candidates(board: PrioritizedBoard, student: dict) -> list[BoardEntry]:
    """Board entries whose path differs from the student's (compared at the student's resolution)."""
    resolution = student.get("resolution")
    key = arch_id(student)
    return [e for e in board.entries if arch_id(dict(e.arch, resolution=resolution)) != key]


CREAM_EXTRA_KEY = "cream"


def board_record(board: PrioritizedBoard, held_out_seed: int, held_out_indices: list[int]) -> dict:
    """Plain values for a checkpoint's ``extra``: the board, best path first, and the held-out slice."""
    ranked = sorted(board.entries, key=lambda e: (-e.accuracy, e.macs))
    return {"board": [{"arch": e.arch, "accuracy": float(e.accuracy), "macs_m": float(e.macs)} for e in ranked],
            "held_out_seed": int(held_out_seed), "held_out_train_indices": list(held_out_indices)}


def cream_answer(extra: dict) -> list[dict]:
    """Cream's answer recorded in a checkpoint's ``extra``: the board's best path ([] without one)."""
    board = (extra.get(CREAM_EXTRA_KEY) or {}).get("board") or []
    return [board[0]["arch"]] if board else []


def board_prior(board: PrioritizedBoard, mix: float) -> ArchPrior:
    """Per-decision value counts over the board's paths (for weighted student sampling)."""
    counts: dict[str, list[dict[int, float]]] = {}
    for entry in board.entries:
        for key, value in entry.arch.items():
            values = value if isinstance(value, list) else [value]
            slots = counts.setdefault(key, [{} for _ in values])
            for slot, v in zip(slots, values, strict=True):
                slot[v] = slot.get(v, 0.0) + 1.0
    return ArchPrior(counts=counts, mix=mix if board.entries else 0.0)


class MetaNetwork(nn.Module):
    """Scores a teacher for a student from their softmax difference on the stored images."""

    def __init__(self, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(num_classes, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, student_probs: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
        """A score in (0, 1): mean over stored images of the MLP, through a sigmoid."""
        return torch.sigmoid(self.layers(student_probs - teacher_probs).mean())


def select_teacher(meta: MetaNetwork, student_probs: torch.Tensor,
                   board: PrioritizedBoard) -> tuple[int, torch.Tensor]:
    """Index of the highest-scoring board entry and its score rho (graph kept to the meta net)."""
    scores = torch.stack([meta(student_probs.detach(), e.probs.to(student_probs.device))
                          for e in board.entries])
    index = int(torch.argmax(scores.detach()).item())
    return index, scores[index]


def meta_gradient(
    student: nn.Module,
    rho: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    target_probs: torch.Tensor,
    held_out_images: torch.Tensor,
    held_out_labels: torch.Tensor,
    lr: float,
    label_smoothing: float = 0.0,
) -> None:
    """Backpropagate the one-step meta-gradient into the meta network through ``rho``.

    ``student`` is the supernet with the student path active; its BatchNorm statistics should be
    frozen by the caller (batch statistics are used, running buffers must not move).
    """
    params = {name: p for name, p in student.named_parameters() if p.requires_grad}
    names = list(params)
    tensors = [params[n] for n in names]
    logits = student(images)
    ce = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    kd = -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    grads_kd = torch.autograd.grad(kd, tensors, retain_graph=True, allow_unused=True)
    grads_ce = torch.autograd.grad(ce, tensors, allow_unused=True)
    r = float(rho.detach())
    stepped = {}
    for name, p, g_kd, g_ce in zip(names, tensors, grads_kd, grads_ce, strict=True):
        if g_kd is None and g_ce is None:
            stepped[name] = p.detach()
            continue
        g_kd = torch.zeros_like(p) if g_kd is None else g_kd
        g_ce = torch.zeros_like(p) if g_ce is None else g_ce
        stepped[name] = (p.detach() - lr * (r * g_kd + (2.0 - r) * g_ce) / 2.0).requires_grad_(True)
    buffers = dict(student.named_buffers())
    val_logits = functional_call(student, {**stepped, **buffers}, (held_out_images,))
    val_loss = F.cross_entropy(val_logits, held_out_labels)
    trainable = [n for n in names if stepped[n].requires_grad]
    grads_val = torch.autograd.grad(val_loss, [stepped[n] for n in trainable], allow_unused=True)
    by_name = dict(zip(names, zip(grads_kd, grads_ce, strict=True), strict=True))
    d_rho = torch.zeros((), device=rho.device)
    for name, g_val in zip(trainable, grads_val, strict=True):
        if g_val is None:
            continue
        g_kd, g_ce = by_name[name]
        diff = (0 if g_kd is None else g_kd) - (0 if g_ce is None else g_ce)
        d_rho = d_rho + (g_val * diff).sum()
    rho.backward((-lr / 2.0) * d_rho.detach())
