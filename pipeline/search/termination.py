"""When a search stops: termination objects over the search's progress, combined with ``AnyOf``.

In pymoo's manner, a termination is asked two things about a ``Progress`` (evaluations spent,
iterations done, whether the space has run out of unevaluated architectures): ``done`` and how
many true evaluations are still allowed (``evaluations_left``; ``None`` when it sets no limit).
NATv2 (``natv2.py``) caps each iteration's candidates with ``evaluations_left``; PNAG
(``pipeline.generate``) counts its verification evaluations against a ``MaxEvaluations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Progress:
    """What a search has spent so far."""

    evaluations: int = 0
    iterations: int = 0
    exhausted: bool = False


class Termination(Protocol):
    def done(self, progress: Progress) -> bool: ...

    def evaluations_left(self, progress: Progress) -> int | None: ...


@dataclass(frozen=True)
class MaxEvaluations:
    """Stop once ``limit`` distinct architectures have been truly evaluated."""

    limit: int

    def done(self, progress: Progress) -> bool:
        return progress.evaluations >= self.limit

    def evaluations_left(self, progress: Progress) -> int | None:
        return max(0, self.limit - progress.evaluations)


@dataclass(frozen=True)
class MaxIterations:
    """Stop after ``limit`` search iterations (the initial archive is iteration 0)."""

    limit: int

    def done(self, progress: Progress) -> bool:
        return progress.iterations >= self.limit

    def evaluations_left(self, progress: Progress) -> int | None:
        return None


@dataclass(frozen=True)
class SpaceExhausted:
    """Stop when the space has no unevaluated architecture left to propose."""

    def done(self, progress: Progress) -> bool:
        return progress.exhausted

    def evaluations_left(self, progress: Progress) -> int | None:
        return None


class AnyOf:
    """Done as soon as any member is; allows the fewest evaluations any member allows."""

    def __init__(self, *members: Termination) -> None:
        self.members = members

    def done(self, progress: Progress) -> bool:
        return any(member.done(progress) for member in self.members)

    def evaluations_left(self, progress: Progress) -> int | None:
        limits = [left for m in self.members if (left := m.evaluations_left(progress)) is not None]
        return min(limits) if limits else None


def default_termination(max_evaluations: int, iterations: int | None = None) -> AnyOf:
    """NATv2's default: the evaluation budget, an optional iteration cap, or an exhausted space."""
    members: list[Termination] = [MaxEvaluations(max_evaluations), SpaceExhausted()]
    if iterations is not None:
        members.append(MaxIterations(iterations))
    return AnyOf(*members)
