"""Evaluator scaling: 2 evaluator actors against 1, in alternating rounds, and where a round's time goes.

``eval_scaling`` keeps a 1-actor and a 2-actor ``OFAv2ActorEvaluator`` alive side by side (both
warmed up), then runs ``rounds`` rounds; in each, the 1-actor pool and then the 2-actor pool
evaluate the same fresh architectures (BN recalibration + validation, one thread per actor). The figure is
the median over rounds of that round's 2-actor / 1-actor rate, with the spread over rounds and
the 1-minute load average sampled after each round (the machine is shared with Ray's daemons).
With ``many=4`` on a simulated 4-node cluster it gives what each node adds.

``RoundProfiler`` times the same work in this process, piece by piece, for one architecture right
after each 1-actor round: BN recalibration, the validation forward passes, cost counting and
pickling the result; the rest of that round's time per architecture is Ray and the driver
(scheduling, transfer, the archive look-ups).
"""

from __future__ import annotations

import os
import pickle
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.config import PipelineConfig


@dataclass(frozen=True)
class ScalingFigures:
    ratio: float
    ratios: list[float]
    rates: dict[int, list[float]]
    load_avg: list[float]
    seconds_per_arch_1: list[float]
    pieces: list[dict[str, float]]
    nodes: int = 1  # distinct nodes the many-actor pool's actors run on

    def detail(self) -> str:
        many = max(self.rates)
        one, pool = statistics.median(self.rates[1]), statistics.median(self.rates[many])
        return (f"median of {len(self.ratios)} alternating rounds (spread {min(self.ratios):.2f}-"
                f"{max(self.ratios):.2f}); 1 actor {one:.1f}/min, {many} actors on {self.nodes} node(s) "
                f"{pool:.1f}/min; load average "
                f"{min(self.load_avg):.2f}-{max(self.load_avg):.2f}")

    def profile(self) -> dict[str, float]:
        """Per architecture, the median over rounds of each piece, and of the round's time not computing."""
        names = list(self.pieces[0]) if self.pieces else []
        rest = [total - sum(piece.values()) for total, piece in zip(self.seconds_per_arch_1, self.pieces, strict=True)]
        return {"round_s_per_arch": statistics.median(self.seconds_per_arch_1),
                **{f"{name}_s": statistics.median(piece[name] for piece in self.pieces) for name in names},
                "ray_and_driver_s": statistics.median(rest) if rest else float("nan")}


class RoundProfiler:
    """One evaluation timed piece by piece in this process, one thread, as an accuracy actor does it:
    BN recalibration, validation forward passes, cost counting and pickling the result."""

    def __init__(self, config: PipelineConfig, checkpoint: Path, seed: int):
        from pipeline.evaluate.actors import AccuracyWorker

        threads = torch.get_num_threads()
        self.worker = AccuracyWorker(str(checkpoint), config.data.model_dump(mode="json"), config.run.seed,
                                     config.evaluate.model_dump(mode="json"))
        torch.set_num_threads(threads)
        self.rng = np.random.default_rng(seed)

    def time_one(self, space) -> dict[str, float]:
        from pipeline.supernet.bn import recalibrate_bn
        from pipeline.supernet.costs import arch_costs

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        net, scorer = self.worker.net, self.worker.scorer
        try:
            arch = net.set_active(space.sample(self.rng))
            scorer.inputs(arch["resolution"])  # preprocessing is cached per resolution in the actor too
            marks = [time.perf_counter()]
            recalibrate_bn(net, scorer.calibration_batches(arch["resolution"]), arch=arch)
            marks.append(time.perf_counter())
            accuracies = scorer.exit_accuracies(net, arch["resolution"], multi_exit="exit" in arch)
            marks.append(time.perf_counter())
            costs = arch_costs(net, arch)
            marks.append(time.perf_counter())
            pickle.loads(pickle.dumps({"metrics": {"top1": accuracies[-1], **costs}, "arch": arch}))
            marks.append(time.perf_counter())
        finally:
            torch.set_num_threads(threads)
        return dict(zip(("bn_recalibration", "forward", "costs", "serialisation"), np.diff(marks).tolist(), strict=True))


def eval_scaling(config: PipelineConfig, work: Path, space, rounds: int, archs_per_round: int,
                 profiler: RoundProfiler | None = None, many: int = 2) -> ScalingFigures:
    """Median ``many``-actor / 1-actor evaluation rate over ``rounds`` alternating rounds.

    With a ``profiler``, one architecture is timed piece by piece right after each 1-actor round
    (the pools idle), so the profile sees the load that round saw. Both pools of a round evaluate
    the same ``archs_per_round * many / 2`` architectures, so every actor of the ``many`` pool gets
    as much work as in the 1-vs-2 figure.
    """
    from pipeline.evaluate.ofav2_evaluator import ACCURACY_POOL, OFAv2ActorEvaluator

    rng = np.random.default_rng(config.run.seed)
    evaluators = {}
    for actors in (1, many):
        settings = config.model_copy(deep=True)
        settings.evaluate.num_evaluators = actors
        evaluators[actors] = OFAv2ActorEvaluator(settings, work, profiles=[])
        evaluators[actors].evaluate([space.sample(rng) for _ in range(2 * actors)])  # start and warm up
    import ray

    nodes = len(set(ray.get([actor.ping.remote() for actor in evaluators[many].pools[ACCURACY_POOL].actors])))
    if profiler is not None:
        profiler.time_one(space)  # warm-up, as the actors were warmed up
    rates: dict[int, list[float]] = {1: [], many: []}
    load_avg, seconds_1, pieces = [], [], []
    try:
        # a full round, not counted, first: a fresh actor's first rounds run slower (the allocator
        # grows to the largest resolutions and widths), which would favour whichever pool is second
        warm_up = [space.sample(rng) for _ in range(archs_per_round * max(1, many // 2))]
        for evaluator in evaluators.values():
            evaluator.evaluate(warm_up)
        for number in range(rounds):
            # both pools evaluate the same architectures (each evaluator has its own cache), so a
            # round's ratio does not depend on which pool drew the costly ones; the pool that goes
            # first alternates, so a drift in the machine's load cancels over rounds
            archs = [space.sample(rng) for _ in range(archs_per_round * max(1, many // 2))]
            for actors in ((1, many) if number % 2 == 0 else (many, 1)):
                start = time.perf_counter()
                results = evaluators[actors].evaluate(archs)
                elapsed = time.perf_counter() - start
                assert all(r.status == "ok" for r in results), [r.error for r in results if r.status != "ok"]
                rates[actors].append(60.0 * len(archs) / elapsed)
                if actors == 1:
                    seconds_1.append(elapsed / len(archs))
                    if profiler is not None:
                        pieces.append(profiler.time_one(space))
            load_avg.append(os.getloadavg()[0])
    finally:
        for evaluator in evaluators.values():
            evaluator.shutdown()
    ratios = [pool / one for one, pool in zip(rates[1], rates[many], strict=True)]
    return ScalingFigures(statistics.median(ratios), ratios, rates, load_avg, seconds_1, pieces if profiler else [], nodes)
