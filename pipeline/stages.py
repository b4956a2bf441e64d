"""The pipeline's stages on one run directory: train, search, generate, finetune, report.

Each ``run_*_stage`` function does one stage from a validated ``PipelineConfig``; the jobs in
``jobs/`` call them, and ``run_pipeline`` runs them in order, skipping stages recorded as
completed in ``stages.json`` (so ``--resume`` continues from the last completed stage, and the
interrupted stage continues from its own checkpoints). This module sits above every package and
is the only place that wires the supernet-backed evaluator into the search engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError
from pipeline.run_dir import RunDir
from pipeline.space.base import Architecture

STAGES: tuple[str, ...] = ("train", "search", "generate", "finetune", "report")


def _print(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------------- train
def run_train_stage(config: PipelineConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train the supernet (Ray Train) into ``run_dir/supernet``."""
    from pipeline.train import train_supernet

    return train_supernet(config, run_dir, resume=resume)


# ---------------------------------------------------------------------------------- search
class ArchiveActorSink:
    """The search engine's archive sink over the named archive actor."""

    def __init__(self, handle: Any):
        self.handle = handle

    def upsert(self, rows: Sequence[dict[str, Any]]) -> int:
        import ray

        return ray.get(self.handle.upsert.remote(list(rows), merge=True))

    def write_front(self, iteration: int) -> str:
        import ray

        return ray.get(self.handle.write_front.remote(iteration))

    def frame(self) -> pd.DataFrame:
        import ray

        return ray.get(self.handle.frame.remote())


class MeasuredLatencyPredictor:
    """A latency predictor for one profile, refitted whenever the evaluator has measured more."""

    def __init__(self, evaluator: Any, profile: str):
        self.evaluator, self.profile = evaluator, profile
        self._fitted: Any = None
        self._fitted_on = -1

    def predict(self, archs: Sequence[Architecture]) -> np.ndarray:
        measured = self.evaluator.evaluations
        if self._fitted is None or measured != self._fitted_on:
            self._fitted = self.evaluator.latency_predictor(self.profile)
            self._fitted_on = measured
        features = [self.evaluator.cheap_metrics(arch) for arch in archs]  # cached per arch_id
        return np.asarray(self._fitted.predict(list(archs), features), dtype=float)


def check_generate_settings(config: PipelineConfig) -> None:
    """The generate stage's budget metrics and budgets, before any long work (``pipeline.generate.for_run``)."""
    from pipeline.generate.for_run import check_generate_settings as check

    check(config)


def check_actor_resources(config: PipelineConfig) -> None:
    """Refuse a local Ray too small for the evaluator and latency pools (they would wait forever).

    Attached to a cluster (``RAY_ADDRESS`` set), an autoscaler may still add nodes, so only a
    warning is printed.
    """
    import os

    import ray

    settings = config.evaluate
    needed = settings.num_evaluators * settings.evaluator_num_cpus + sum(
        profile.num_actors * profile.num_cpus for profile in settings.profiles
    )
    available = float(ray.cluster_resources().get("CPU", 0.0))
    if needed <= available + 1e-9:
        return
    message = (
        f"the evaluator and latency pools need {needed:g} CPUs but Ray has {available:g}; lower "
        "evaluate.num_evaluators, evaluate.evaluator_num_cpus or the profiles' num_cpus, or raise ray.num_cpus"
    )
    if os.environ.get("RAY_ADDRESS"):
        _print(f"warning: {message} (waiting for the autoscaler)")
        return
    raise ConfigError(message)


def run_search_stage(config: PipelineConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """NATv2 on the trained supernet, through evaluator/latency actors and the archive actor."""
    from pipeline.evaluate.objectives import ofav2_objectives
    from pipeline.evaluate.ofav2_evaluator import OFAv2ActorEvaluator
    from pipeline.search.archive import start_archive
    from pipeline.search.driver import run_search
    from pipeline.search.natv2 import NATv2Settings

    if config.search.space != "ofav2":
        raise ConfigError("the pipeline searches the ofav2 supernet; set search.space: ofav2 "
                          "(use jobs/search.py --space natsbench for the benchmark table)")
    objectives = ofav2_objectives(config)
    check_actor_resources(config)
    settings = NATv2Settings.from_mapping(config.search.model_dump())
    metadata = config.model_dump(mode="json")
    handle = start_archive(run_dir, config.run.name, "ofav2", objectives, config=metadata,
                           name=f"archive-{config.run.name}")
    with OFAv2ActorEvaluator(config, run_dir, archive=handle) as evaluator:
        predictors = {
            o.name: MeasuredLatencyPredictor(evaluator, o.name.split("@", 1)[1])
            for o in objectives if o.name.startswith("latency_ms@")
        }
        adapt = None
        if config.search.adaptation.enabled:
            from pipeline.train.adapt import adapt_supernet

            def adapt(archs: list[Architecture]) -> None:
                adapt_supernet(config, run_dir, archs, log=_print)

        result = run_search(
            evaluator, objectives, settings, run_dir, seed=config.run.seed, run_id=config.run.name,
            resume=resume, metadata=metadata, sink=ArchiveActorSink(handle),
            latency_predictors=predictors or None, adapt=adapt, log=_print,
        )
        from pipeline.train.cream import evaluate_cream_answer

        evaluate_cream_answer(evaluator, ArchiveActorSink(handle), run_dir)  # a Cream-trained run's answer
    last = result.history[-1] if result.history else {}
    return {"evaluations": result.evaluations, "hypervolume": last.get("hypervolume")}


# -------------------------------------------------------------------------------- generate
def open_run_for_generation(run_dir: Path) -> tuple[Any, Callable[[Architecture], dict[str, float]]]:
    """The run's ofav2 space and its exact cost (params and MACs counted on the supernet), for PNAG."""
    from pipeline.supernet.checkpoint import load_supernet
    from pipeline.supernet.costs import ArchCostCounter

    net, _ = load_supernet(RunDir(run_dir).supernet)
    return net.space, ArchCostCounter(net)


def run_generate_stage(config: PipelineConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """PNAG fitted on the archive (``RUN_DIR/generator/``), its answers measured on the actors."""
    from pipeline.evaluate.ofav2_evaluator import OFAv2ActorEvaluator
    from pipeline.generate.for_run import generate_stage

    space, exact_costs = open_run_for_generation(run_dir)
    check_actor_resources(config)
    with OFAv2ActorEvaluator(config, run_dir, run_id=config.run.name) as evaluator:
        return generate_stage(config, run_dir, space, exact_costs, evaluator, log=_print)


# -------------------------------------------------------------------------------- finetune
def run_finetune_stage(config: PipelineConfig, run_dir: Path, resume: bool = False,
                       archs: Sequence[Architecture] | None = None) -> dict[str, Any]:
    """Ray Tune trials fine-tuning the chosen subnets; ONNX to ``models/``, ``finetuned.parquet``."""
    from pipeline.supernet.checkpoint import load_supernet
    from pipeline.train.choices import finetune_choices
    from pipeline.train.finetune import run_finetune

    net, _ = load_supernet(RunDir(run_dir).supernet)
    space = net.space
    chosen = [space.validate(a) for a in archs] if archs else finetune_choices(config.finetune, run_dir, space)
    frame = run_finetune(
        chosen, space=space, run_dir=run_dir, run_id=config.run.name, data=config.data,
        settings=config.finetune, seed=config.run.seed, exit_weights=config.train.exit_weights,
        metadata={"config": config.model_dump(mode="json")}, resume=resume,
    )
    ok = frame[frame["status"] == "ok"]
    _print(f"finetune: {len(ok)}/{len(frame)} subnets fine-tuned and exported to {run_dir / 'models'}")
    return {"finetuned": len(ok), "failed": int((frame["status"] != "ok").sum())}


# ---------------------------------------------------------------------------------- report
def run_report_stage(config: PipelineConfig, run_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Plots of every stage's results into ``plots/``."""
    from pipeline.plots import plot_run

    written = plot_run(run_dir)
    _print("plots: " + ", ".join(str(p) for p in written))
    return {"plots": len(written)}


STAGE_FUNCTIONS: dict[str, Callable[[PipelineConfig, Path, bool], dict[str, Any]]] = {
    "train": run_train_stage,
    "search": run_search_stage,
    "generate": run_generate_stage,
    "finetune": run_finetune_stage,
    "report": run_report_stage,
}


def check_stages(stages: Sequence[str]) -> None:
    """One ``ConfigError`` naming any stage that does not exist."""
    unknown = [s for s in stages if s not in STAGE_FUNCTIONS]
    if unknown:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")


def run_pipeline(config: PipelineConfig, run_dir: Path, resume: bool = False,
                 stages: Sequence[str] = STAGES) -> dict[str, dict[str, Any]]:
    """Run ``stages`` in order, skipping those already completed; return each stage's summary."""
    check_stages(stages)
    done = RunDir(run_dir).completed_stages() if resume else []
    summaries: dict[str, dict[str, Any]] = {}
    for index, stage in enumerate(stages, start=1):
        if stage in done:
            _print(f"[{index}/{len(stages)}] {stage}: already completed, skipped")
            continue
        _print(f"[{index}/{len(stages)}] {stage} ...")
        summaries[stage] = STAGE_FUNCTIONS[stage](config, run_dir, resume)
        RunDir(run_dir).mark_completed(stage, **{k: v for k, v in summaries[stage].items() if v is not None})
    return summaries
