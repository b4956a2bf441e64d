"""Evaluator scaling: 2 evaluator actors against 1, in alternating rounds, and where a round's time goes.

``eval_scaling`` keeps a 1-actor and a 2-actor ``OFAv2ActorEvaluator`` alive side by side (both
warmed up), then runs ``rounds`` rounds; in each, the 1-actor pool and then the 2-actor pool
evaluate fresh architectures (BN recalibration + validation, one thread per actor). The figure is
the median over rounds of that round's 2-actor / 1-actor rate, with the spread over rounds and
the 1-minute load average sampled after each round (the machine is shared with Ray's daemons).

``round_profile`` times the same work in this process, piece by piece, for one architecture:
BN recalibration, the validation forward passes, cost counting and pickling the result (after one
untimed warm-up architecture); the
rest of a 1-actor round's time per architecture is Ray and the driver (scheduling, transfer).
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
    seconds_per_arch_1: float

    def detail(self) -> str:
        one, two = statistics.median(self.rates[1]), statistics.median(self.rates[2])
        return (f"median of {len(self.ratios)} alternating rounds (spread {min(self.ratios):.2f}-"
                f"{max(self.ratios):.2f}); 1 actor {one:.1f}/min, 2 actors {two:.1f}/min; load average "
                f"{min(self.load_avg):.2f}-{max(self.load_avg):.2f}")


def eval_scaling(config: PipelineConfig, work: Path, space, rounds: int, archs_per_round: int) -> ScalingFigures:
    """Median 2-actor / 1-actor evaluation rate over ``rounds`` alternating rounds."""
    from pipeline.evaluate.ofav2_evaluator import OFAv2ActorEvaluator

    rng = np.random.default_rng(config.run.seed)
    evaluators = {}
    for actors in (1, 2):
        settings = config.model_copy(deep=True)
        settings.evaluate.num_evaluators = actors
        evaluators[actors] = OFAv2ActorEvaluator(settings, work, profiles=[])
        evaluators[actors].evaluate([space.sample(rng) for _ in range(2 * actors)])  # start and warm up
    rates: dict[int, list[float]] = {1: [], 2: []}
    load_avg, seconds_1 = [], []
    try:
        for _ in range(rounds):
            for actors in (1, 2):
                archs = [space.sample(rng) for _ in range(archs_per_round)]
                start = time.perf_counter()
                results = evaluators[actors].evaluate(archs)
                elapsed = time.perf_counter() - start
                assert all(r.status == "ok" for r in results), [r.error for r in results if r.status != "ok"]
                rates[actors].append(60.0 * len(archs) / elapsed)
                if actors == 1:
                    seconds_1.append(elapsed / len(archs))
            load_avg.append(os.getloadavg()[0])
    finally:
        for evaluator in evaluators.values():
            evaluator.shutdown()
    ratios = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    return ScalingFigures(statistics.median(ratios), ratios, rates, load_avg, statistics.median(seconds_1))


def round_profile(config: PipelineConfig, checkpoint: Path, space, count: int) -> dict[str, float]:
    """Seconds per architecture of each piece of an evaluation, timed in this process on one thread."""
    from pipeline.evaluate.actors import AccuracyWorker
    from pipeline.supernet.bn import recalibrate_bn
    from pipeline.supernet.costs import arch_costs

    threads = torch.get_num_threads()
    worker = AccuracyWorker(str(checkpoint), config.data.model_dump(mode="json"), config.run.seed,
                            config.evaluate.model_dump(mode="json"))
    net, scorer = worker.net, worker.scorer
    rng = np.random.default_rng(config.run.seed + 7)
    spent = {"bn_recalibration": 0.0, "forward": 0.0, "costs": 0.0, "serialisation": 0.0}
    try:
        for index in range(count + 1):  # the first is a warm-up, as the actors are warmed up
            if index == 1:
                spent = dict.fromkeys(spent, 0.0)
            arch = net.set_active(space.sample(rng))
            scorer.inputs(arch["resolution"])  # preprocessing is cached per resolution in the actor too
            start = time.perf_counter()
            recalibrate_bn(net, scorer.calibration_batches(arch["resolution"]), arch=arch)
            middle = time.perf_counter()
            accuracies = scorer.exit_accuracies(net, arch["resolution"], multi_exit="exit" in arch)
            end = time.perf_counter()
            costs = arch_costs(net, arch)
            after = time.perf_counter()
            pickle.loads(pickle.dumps({"metrics": {"top1": accuracies[-1], **costs}, "arch": arch}))
            spent["bn_recalibration"] += middle - start
            spent["forward"] += end - middle
            spent["costs"] += after - end
            spent["serialisation"] += time.perf_counter() - after
    finally:
        torch.set_num_threads(threads)
    return {name: value / count for name, value in spent.items()}
