"""``OFAv2ActorEvaluator``: the ``Evaluator`` of the ofav2 space, backed by Ray actor pools.

One call of ``evaluate(archs)``:

1. validates every architecture (``ArchitectureError`` before any work starts);
2. asks the archive actor which of them it already holds and skips what is measured: accuracy
   when an ``ok`` row has ``top1`` (and ``top1@<profile>`` of every int8 profile) measured under
   the published checkpoint's adaptation round
   (``supernet_round``; after a search-time adaptation older accuracies are stale), latency per
   ``(arch_id, profile)`` when the row (or this evaluator's memory) has ``latency_ms@<profile>``;
3. runs the rest through one ``Dispatcher``: the evaluator pool (accuracy, params, MACs) and one
   latency pool per hardware profile, all in the same ``ray.wait`` loop;
4. as soon as every piece of an architecture is in, builds its result (a failed piece makes a
   ``failed`` result with the error text) and, when something was measured, hands it to
   ``evaluate_streaming``'s callback (the search's ``ResultRecorder`` writes it to the archive);
5. returns one ``EvaluationResult`` per input architecture, in order.

The per-call books are a ``_Batch``, keyed by ``(arch_id, pool)`` work items.

Locally (the two-profile stand-in) latency actors share the machine's cores with the evaluator
actors, so their figures carry that noise; on a cluster each profile's actors have their own
nodes. ``evaluations`` counts architectures whose accuracy was truly measured. ``cheap_metrics`` gives
exact ``params_m`` / ``macs_m`` from a local copy of the supernet without counting.

The evaluator writes nothing: it reads the archive actor (through its handle) only as a cache of
earlier measurements, so it does not import the search package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.errors import CheckpointError
from pipeline.evaluate.actors import SUPERNET_ROUND, accuracy_pool, latency_pool
from pipeline.evaluate.dispatch import Dispatcher, Outcome, WorkItem
from pipeline.evaluate.interface import EvaluationResult, Evaluator, OnMeasured
from pipeline.evaluate.objectives import quantized_top1_metric
from pipeline.evaluate.predictor import LatencyPredictor, held_out_error
from pipeline.evaluate.profiles import latency_metric, resolve_profiles
from pipeline.schema import LATENCY_PREFIX
from pipeline.space.base import Architecture, arch_id
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet.checkpoint import adaptation_round
from pipeline.train.files import published_supernet

ACCURACY_POOL = "accuracy"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating)) and math.isfinite(float(value))


class OFAv2ActorEvaluator(Evaluator):
    """Evaluates ofav2 architectures on the evaluator and latency actor pools."""

    cheap_metric_names = ("params_m", "macs_m")

    def __init__(
        self,
        config: PipelineConfig,
        run_dir: str | Path,
        *,
        archive: Any = None,
        run_id: str | None = None,
        profiles: Sequence[str] | None = None,
        checkpoint: str | Path | None = None,
    ) -> None:
        from pipeline.supernet.checkpoint import load_supernet

        self.config = config
        self.settings = config.evaluate
        self.run_dir = Path(run_dir)
        self.archive = archive
        self.run_id = run_id or config.run.name
        self.profiles = resolve_profiles(self.settings, profiles)
        self.checkpoint = Path(checkpoint or self.settings.checkpoint or published_supernet(self.run_dir))
        if not self.checkpoint.is_file():
            raise CheckpointError(f"supernet checkpoint {self.checkpoint} does not exist")
        self.local_net, extra = load_supernet(self.checkpoint)
        self._checkpoint_signature = self._signature()
        self._supernet_round = adaptation_round(extra)
        self.space: OFAv2Space = self.local_net.space
        self.cache_dir = Path(self.settings.onnx_cache or self.run_dir / "onnx_cache")
        self.evaluations = 0
        self._accuracy: dict[str, dict[str, float]] = {}
        self._latency: dict[tuple[str, str], dict[str, float]] = {}
        self._cheap: dict[str, dict[str, float]] = {}
        self._arch_of: dict[str, Architecture] = {}
        self.placements: dict[tuple[str, str], str] = {}
        # the evaluator's profiles only: their int8 ones get top1@<profile> from the accuracy actors
        accuracy_settings = self.settings.model_copy(update={"profiles": self.profiles})
        pools = [accuracy_pool(self.checkpoint, config.data, config.run.seed, accuracy_settings, ACCURACY_POOL,
                               cache_dir=self.cache_dir)]
        pools += [
            latency_pool(profile, self.space, self.local_net.num_classes, self.cache_dir, self.settings,
                         data=config.data, seed=config.run.seed)
            for profile in self.profiles
        ]
        self.dispatcher = Dispatcher(pools)

    # ------------------------------------------------------------------------------ public API
    @property
    def _quantized_metrics(self) -> list[str]:
        """``top1@<profile>`` of every int8 profile: measured by the accuracy actors with ``top1``."""
        return [quantized_top1_metric(profile.name) for profile in self.profiles if profile.precision == "int8"]

    @property
    def profile_names(self) -> list[str]:
        return [profile.name for profile in self.profiles]

    @property
    def pools(self):
        return self.dispatcher.pools

    def cheap_metrics(self, arch: Architecture) -> dict[str, float]:
        """Exact params (M) and MACs (M) of ``arch``, from the local supernet copy; not counted."""
        from pipeline.supernet.costs import arch_costs

        arch = self.space.validate(arch)
        key = arch_id(arch)
        if key not in self._cheap:
            self._cheap[key] = {name: float(value) for name, value in arch_costs(self.local_net, arch).items()}
        return dict(self._cheap[key])

    def evaluate(self, archs: Sequence[Architecture]) -> list[EvaluationResult]:
        """Truly evaluate ``archs`` (what is already measured is reused); one result each, in order."""
        return self.evaluate_streaming(archs, lambda result: None)

    def evaluate_streaming(self, archs: Sequence[Architecture], on_measured: OnMeasured) -> list[EvaluationResult]:
        """``evaluate``; each architecture with a new measurement goes to ``on_measured`` once complete."""
        canonical = [self.space.validate(arch) for arch in archs]
        ids = [arch_id(arch) for arch in canonical]
        unique = dict(zip(ids, canonical, strict=True))
        known = self._known_rows(list(unique))
        items, waiting = self._plan(unique, known, self._current_round())
        self.evaluations += sum(1 for item in items if item.pool == ACCURACY_POOL)
        batch = _Batch(self, unique, known, waiting, on_measured)
        for key, count in waiting.items():
            if count == 0:
                batch.complete(key)
        self.dispatcher.run(items, on_outcomes=batch.take)
        return [batch.finished[key] for key in ids]

    def latency_predictor(self, profile: str, model: str = "linear") -> LatencyPredictor:
        """A ``LatencyPredictor`` for ``profile`` fitted on every latency measured for this run: by this
        evaluator, and the ``ok`` rows the archive already holds (so a resumed search, whose new
        process has measured nothing yet, fits on what earlier processes measured)."""
        archs, latencies, features = self.measured_latencies(profile)
        return LatencyPredictor.fit(self.space, archs, latencies, features, model=model)

    def measured_latencies(self, profile: str) -> tuple[list[Architecture], list[float], list[dict[str, float]]]:
        """What ``latency_predictor`` fits on: architectures, measured ``latency_ms@profile`` and their
        cheap features (``params_m``, ``macs_m``), from this evaluator and the archive's ``ok`` rows."""
        resolve_profiles(self.settings, [profile])
        metric = latency_metric(profile)
        measured = {key: (self._arch_of[key], metrics[metric]) for (key, name), metrics in self._latency.items()
                    if name == profile}
        for key, (arch, value) in self._archived_latencies(metric).items():
            measured.setdefault(key, (arch, value))
        archs = [arch for arch, _ in measured.values()]
        return archs, [value for _, value in measured.values()], [self.cheap_metrics(arch) for arch in archs]

    def latency_predictors(self, objectives: Sequence[Any]) -> dict[str, MeasuredLatencyPredictor] | None:
        """One refitting predictor per ``latency_ms@PROFILE`` objective (None when there is none)."""
        predictors = {o.name: MeasuredLatencyPredictor(self, o.name.split("@", 1)[1])
                      for o in objectives if o.name.startswith(LATENCY_PREFIX)}
        return predictors or None

    def _archived_latencies(self, metric: str) -> dict[str, tuple[Architecture, float]]:
        if self.archive is None:
            return {}
        import ray

        frame = ray.get(self.archive.frame.remote())
        if metric not in frame or frame.empty:
            return {}
        usable = frame[(frame["status"] == "ok") & frame[metric].notna() & (frame["run_id"] == self.run_id)]
        return {key: (self.space.from_text(text), float(value))
                for key, text, value in zip(usable["arch_id"], usable["arch"], usable[metric], strict=True)}

    def shutdown(self) -> None:
        """Kill the actor pools (the archive actor belongs to the caller)."""
        self.dispatcher.shutdown()

    def __enter__(self) -> OFAv2ActorEvaluator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------------------ internals
    def _known_rows(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        if self.archive is None or not keys:
            return {}
        import ray

        return ray.get(self.archive.get_if_exists.remote(keys))

    def _signature(self) -> tuple[int, int]:
        stat = self.checkpoint.stat()
        return stat.st_mtime_ns, stat.st_size

    def _current_round(self) -> int:
        """The adaptation round of the published checkpoint; accuracies of older rounds are stale
        (forgotten here, and re-measured when an archive row carries an older ``supernet_round``)."""
        from pipeline.supernet.checkpoint import load_supernet

        signature = self._signature()
        if signature != self._checkpoint_signature:
            _, extra = load_supernet(self.checkpoint)
            if adaptation_round(extra) != self._supernet_round:
                self._accuracy.clear()
            self._checkpoint_signature, self._supernet_round = signature, adaptation_round(extra)
        return self._supernet_round

    def _plan(
        self, unique: dict[str, Architecture], known: dict[str, dict[str, Any]], supernet_round: int
    ) -> tuple[list[WorkItem], dict[str, int]]:
        """Work items for what is not measured yet, and how many pieces each architecture waits for."""
        items: list[WorkItem] = []
        needed: dict[str, int] = {}
        for key, arch in unique.items():
            self._arch_of[key] = arch
            row = known.get(key) or {}
            row_ok = row.get("status") == "ok"
            row_round = int(row[SUPERNET_ROUND]) if _finite(row.get(SUPERNET_ROUND)) else 0
            count = 0
            accuracy_known = row_ok and row_round == supernet_round and all(
                _finite(row.get(metric)) for metric in ("top1", *self._quantized_metrics))
            if key not in self._accuracy and not accuracy_known:
                items.append(WorkItem((key, ACCURACY_POOL), ACCURACY_POOL, arch))
                count += 1
            for profile in self.profiles:
                if (key, profile.name) in self._latency or (row_ok and _finite(row.get(latency_metric(profile.name)))):
                    continue
                items.append(WorkItem((key, profile.name), profile.name, arch))
                count += 1
            needed[key] = count
        return items, needed

    def result_from(
        self, arch: Architecture, key: str, row: dict[str, Any] | None, outcomes: dict[str, Outcome]
    ) -> EvaluationResult:
        """``arch``'s result from its archived ``row``, this evaluator's memory and this call's
        ``outcomes`` (one per pool); the new measurements are remembered."""
        metrics: dict[str, float] = {}
        if row and row.get("status") == "ok":
            metrics.update({name: float(value) for name, value in row.items()
                            if (name in ("top1", "params_m", "macs_m") or name.startswith(("top1@", "latency_")))
                            and _finite(value)})
        metrics.update(self._accuracy.get(key, {}))
        for profile in self.profiles:
            metrics.update(self._latency.get((key, profile.name), {}))
        errors = []
        for pool, outcome in outcomes.items():
            if outcome.status != "ok":
                errors.append(f"{pool}: {outcome.error}")
                continue
            value = outcome.value
            metrics.update(value["metrics"])
            if pool == ACCURACY_POOL:
                self._accuracy[key] = dict(value["metrics"])
            else:
                self._latency[(key, pool)] = dict(value["metrics"])
                self.placements[(key, pool)] = value.get("node_id", "")
        # where each profile's latency was measured, so placement can be audited from Parquet
        details = {f"latency_node@{profile}": node for (measured, profile), node in self.placements.items()
                   if measured == key}
        if errors:
            return EvaluationResult(arch, key, metrics, status="failed", error="; ".join(errors), details=details)
        return EvaluationResult(arch, key, metrics, details=details)


class _Batch:
    """One ``evaluate_streaming`` call's books, keyed by ``(arch_id, pool)`` work items.

    ``waiting[arch_id]`` is how many pieces the architecture waits for; once its outcomes are all
    in, its result is built, kept in ``finished`` and, when something was measured, handed on.
    """

    def __init__(self, evaluator: OFAv2ActorEvaluator, archs: dict[str, Architecture],
                 known: dict[str, dict[str, Any]], waiting: dict[str, int], on_measured: OnMeasured) -> None:
        self.evaluator, self.archs, self.known = evaluator, archs, known
        self.waiting, self.on_measured = waiting, on_measured
        self.outcomes: dict[str, dict[str, Outcome]] = {key: {} for key in archs}
        self.finished: dict[str, EvaluationResult] = {}

    def complete(self, key: str) -> None:
        result = self.evaluator.result_from(self.archs[key], key, self.known.get(key), self.outcomes[key])
        self.finished[key] = result
        if self.waiting[key]:
            self.on_measured(result)

    def take(self, outcomes: list[Outcome]) -> None:
        """The dispatcher's ``on_outcomes``: file each outcome, complete the architectures it finishes."""
        for outcome in outcomes:
            key, pool = outcome.key
            self.outcomes[key][pool] = outcome
            if len(self.outcomes[key]) == self.waiting[key]:
                self.complete(key)


class MeasuredLatencyPredictor:
    """A latency predictor for one profile, refitted whenever the evaluator has measured more.

    ``held_out_error()`` says how good the predictor fitted on the current measurements is on
    architectures it was not fitted on (5-fold over the measured set, refitting the same
    ``LatencyPredictor`` with the same features), as the search history's metric names.
    """

    def __init__(self, evaluator: OFAv2ActorEvaluator, profile: str, folds: int = 5):
        self.evaluator, self.profile, self.folds = evaluator, profile, folds
        self._fitted: LatencyPredictor | None = None
        self._fitted_on = -1
        self._error: dict[str, float] | None = None
        self._error_on = -1

    def held_out_error(self) -> dict[str, float]:
        """``{"latency_pred_mape@P": mean relative error, "latency_pred_within10@P": share within 10 %}``
        over K-fold held-out measured architectures (NaN while fewer than 5 are measured).

        Cached until the evaluator measures more, like the fitted predictor.
        """
        measured = self.evaluator.evaluations
        if self._error is None or measured != self._error_on:
            archs, latencies, features = self.evaluator.measured_latencies(self.profile)
            mape, within = held_out_error(self.evaluator.space, archs, latencies, features, folds=self.folds)
            self._error = {f"latency_pred_mape@{self.profile}": mape, f"latency_pred_within10@{self.profile}": within}
            self._error_on = measured
        return dict(self._error)

    def predict(self, archs: Sequence[Architecture]) -> np.ndarray:
        measured = self.evaluator.evaluations
        if self._fitted is None or measured != self._fitted_on:
            self._fitted = self.evaluator.latency_predictor(self.profile)
            self._fitted_on = measured
        features = [self.evaluator.cheap_metrics(arch) for arch in archs]  # cached per arch_id
        return np.asarray(self._fitted.predict(list(archs), features), dtype=float)


def open_run_for_generation(run_dir: str | Path) -> tuple[OFAv2Space, Any]:
    """The run's ofav2 space and its exact cost (params and MACs counted on the supernet), for PNAG."""
    from pipeline.supernet.checkpoint import load_supernet
    from pipeline.supernet.costs import ArchCostCounter

    net, _ = load_supernet(published_supernet(run_dir))
    return net.space, ArchCostCounter(net)
